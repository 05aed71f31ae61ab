"""The README's "Try it by hand" block, run by bash as written: a stack, a worker, one
purchase, and the profile it made, with nothing to copy by hand in between."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def try_it_by_hand() -> str:
    text = README.read_text()
    start = text.index("Try it by hand:")
    (block,) = re.findall(r"```sh\n(.*?)```", text[start:], re.S)[:1]
    return block


def test_the_readme_try_it_by_hand_block_works_as_written(tmp_path):
    crmstream = str(Path(sys.executable).parent / "crmstream")
    script = try_it_by_hand().replace(".venv/bin/crmstream", crmstream)
    # The block leaves the stack and the worker running, as a user's shell would.
    script = f"set -e\n{script}\nkill -TERM $(jobs -p)\nwait\n"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**clean, "CRM_SESSION_TIMEOUT": "6", "CRM_PARTITIONS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=150)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, (out[-2000:], err[-2000:])
    assert "published 1 events to crm.purchases (0 refused)" in out
    profile = json.loads(out[out.index("{") :])
    assert (profile["customer_id"], profile["orders"], profile["revenue"]) == ("alice", 1, 240.0)
    assert (tmp_path / "crm.env").read_text().startswith("CRM_KAFKA_URL=kafka://127.0.0.1:")
    assert "ready: 2 partitions assigned" in (tmp_path / "worker.log").read_text()


def test_health_wait_gives_up_when_no_worker_gets_ready(stack):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    result = subprocess.run(
        [sys.executable, "-m", "crmstream.streams.cli", "health", "--wait", "1"],
        env={**clean, **stack.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "no worker of crmstream (CRM_APP_ID) has written a heartbeat" in result.stdout
