"""The runtime: settings, topics, Redis stores, the Faust app factory, CLI and dev stack."""
