"""The development stack: embedded broker and Redis, the demo and synthetic traffic."""
