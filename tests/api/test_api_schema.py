"""Property-based tests of the HTTP API from its own OpenAPI schema (schemathesis' CLI).

Schemathesis reads /openapi.json from a running `workbench serve-api` and sends
generated requests (valid and invalid) to every operation, with a key. Every
answer must be documented: no 5xx, a declared status code and content type,
and a body matching its schema (problems included).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.api.conftest import ApiServer

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def test_every_operation_conforms_to_its_schema(api_server: ApiServer, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run(
        [
            str(st),
            "run",
            f"{api_server.url}/openapi.json",
            "--header",
            f"X-API-Key: {api_server.key}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--generation-database",
            "none",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Tested: 14" in out, out[-3000:]
    assert " passed" in out and "failure" not in out.split("SUMMARY")[-1], out[-3000:]
    log = api_server.log.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
