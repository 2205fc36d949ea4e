"""A Faust worker built by observability.logs.faust_worker logs JSON lines, like the rest.

A real worker process on the test broker: Faust sets logging up itself when it
starts, so only a started worker shows what it does with the configuration.
"""

import json
import queue
import subprocess
import sys
import threading
import time

# A worker whose one task logs a warning with context, an exception, and prints.
WORKER_SCRIPT = """
import logging
import sys

import faust

from storemon.observability.logs import faust_worker

app_id, bootstrap, datadir, level = sys.argv[1:]
app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", datadir=datadir,
                web_enabled=False)


@app.task
async def log_lines() -> None:
    log = logging.getLogger("storemon.ingest.worker")
    log.info("not at warning level")
    log.warning("rejected a poll", extra={"store_id": "s1"})
    print("printed, not logged")
    try:
        raise ValueError("bad poll")
    except ValueError:
        log.exception("agent failed", extra={"store_id": "s1"})


faust_worker(app, level).execute_from_commandline()
"""
LAST_LINE = "agent failed"
STARTUP_TIMEOUT_S = 90


def test_a_faust_worker_logs_one_json_object_per_line(kafka_bootstrap, topic_prefix, tmp_path):
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, f"{topic_prefix}logs", kafka_bootstrap,
         str(tmp_path / "faust"), "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in worker.stderr])
    reader.start()
    stderr = []
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not any(LAST_LINE in line for line in stderr):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no log line about the failure:\n" + "".join(stderr)
            try:
                stderr.append(lines.get(timeout=min(remaining, 1.0)))
            except queue.Empty:
                assert worker.poll() is None, "the worker exited:\n" + "".join(stderr)
    finally:
        worker.terminate()
        try:
            stdout, _ = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            stdout, _ = worker.communicate()
        reader.join()
    while not lines.empty():
        stderr.append(lines.get())

    # Nothing but JSON objects, one a line, on stderr; stdout stays empty (no banner,
    # no spinner escapes), since a collector reading both would choke on it.
    assert stdout == ""
    entries = [json.loads(line) for line in stderr]
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert {entry["level"] for entry in entries} <= {"WARNING", "ERROR", "CRITICAL"}
    by_message = {entry["message"]: entry for entry in entries}
    assert by_message["rejected a poll"]["store_id"] == "s1"
    assert by_message["rejected a poll"]["logger"] == "storemon.ingest.worker"
    failure = by_message[LAST_LINE]
    assert (failure["level"], failure["store_id"]) == ("ERROR", "s1")
    assert failure["exc_info"].endswith("ValueError: bad poll")
    # Faust sends what a task prints to a logger, so it too is a JSON object.
    assert "printed, not logged" in by_message
    assert "not at warning level" not in by_message
