"""Bad input through the front door: the installed `rustyflower` as a subprocess, over a
table of inputs that each used to end in a traceback, a hang, a wrong exit code, silently
wrong data, or a message that printed a password.

Every row must exit with its code and print exactly one line on stderr, starting with
``error:``, with no traceback; no row may print any part of a password (Zq9, Xw7). No row
needs a server: the URLs point at a closed port, and every check runs before connecting.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.conftest import ACTIVITIES, FLOWS, REPO, RUSTYFLOWER
from tests.redis.servers import free_port

pytestmark = pytest.mark.slow  # about 35 processes of a second each

NOWHERE = f"redis://127.0.0.1:{free_port()}/0"
BAD_BYTES = b'{"name": "caf\xe9"}\n'  # Latin-1, not UTF-8
DEEP = "[" * 100_000 + "]" * 100_000
ALIAS_BOMB = "\n".join(
    [
        "name: bomb\nstart_at: A\nstates:\n  A:\n    type: pass\n    end: true\n    result:",
        '      l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"      l{n}: &l{n} [{','.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 8)),
    ]
)
EVENT_FLOW = (FLOWS / "approval.yaml").read_text()


@dataclass
class Case:
    name: str
    args: list[str | bytes]
    code: int
    message: str
    env: dict[str, str] = field(default_factory=dict)


def cases(files: dict[str, Path]) -> list[Case]:
    f = {name: str(path) for name, path in files.items()}
    greet = str(FLOWS / "greet.yaml")
    return [
        # --- files and data that are not UTF-8 text -------------------------------------------
        Case("flow not utf-8", ["run", f["latin1.yaml"]], 2, "not UTF-8 text (byte 0xe9 at offset"),
        Case("--input @file not utf-8", ["run", greet, "-i", "@" + f["latin1.json"]], 2,
             "--input: " + f["latin1.json"] + ": not UTF-8 text"),
        Case("start --input @file not utf-8",
             ["start", "greet", "-i", "@" + f["latin1.json"], "--redis-url", NOWHERE], 2,
             "not UTF-8 text"),
        Case("signal --data @file not utf-8",
             ["signal", "i-1", "approval", "--data", "@" + f["latin1.json"],
              "--redis-url", NOWHERE], 2, "--data: "),
        Case("--inputs not utf-8", ["start", "greet", "--inputs", f["latin1.json"],
                                    "--redis-url", NOWHERE], 2, "not UTF-8 text"),
        Case("argument bytes not utf-8", ["run", greet, "-i", b'{"name": "caf\xe9"}'], 2,
             "--input is not UTF-8 text"),
        Case("a \\ud800 escape is not text", ["run", greet, "-i", '{"name": "\\ud800"}'], 2,
             "holds a lone surrogate"),
        # --- nesting, aliases, sizes --------------------------------------------------------
        Case("json flow 100k deep", ["run", f["deep.json"]], 2, "nested deeper than 64 levels"),
        Case("yaml flow 100k deep", ["run", f["deep.yaml"]], 2, "nested deeper than 64 levels"),
        Case("yaml alias bomb", ["run", f["bomb.yaml"]], 2, "aliases expand the document by"),
        Case("flow over 1 MiB", ["run", f["huge.yaml"]], 2, "more than 1048576 bytes"),
        Case("--input 100k deep", ["run", greet, "-i", "@" + f["deep-data.json"]], 2,
             "--input nests deeper than 64"),
        Case("--input 65 deep", ["run", greet, "-i", "[" * 65 + "]" * 65], 2,
             "--input nests deeper than 64 levels"),
        # --- numbers JSON has not ---------------------------------------------------------------
        Case("NaN in --input", ["run", greet, "-i", '{"x": NaN}'], 2,
             "--input: NaN is not a number JSON can carry"),
        Case("Infinity in --input", ["run", greet, "-i", "[Infinity]"], 2, "Infinity is not"),
        Case("-Infinity in --event", ["run", str(FLOWS / "approval.yaml"), "--event",
                                      "approval=-Infinity"], 2, "--event approval: -Infinity"),
        Case("1e400 in --data", ["signal", "i-1", "approval", "--data", "1e400",
                                 "--redis-url", NOWHERE], 2, "--data: 1e400 is not a number"),
        Case("NaN in --inputs", ["start", "greet", "--inputs", f["nan.jsonl"],
                                 "--redis-url", NOWHERE], 2, "line 2: NaN is not a number"),
        # --- instance ids -------------------------------------------------------------------
        Case("100 KB id", ["start", "greet", "--id", "x" * 100_000, "--redis-url", NOWHERE], 2,
             "is 100000 characters; at most 256 are allowed"),
        Case("control character in --id", ["start", "greet", "--id", "bad\x1fid",
                                           "--redis-url", NOWHERE], 2, "holds U+001F"),
        Case("control character in an id argument", ["status", "a\x07b", "--redis-url", NOWHERE],
             2, "holds U+0007 at position 2"),
        Case("id bytes not utf-8", ["hold", b"id-\xff", "--redis-url", NOWHERE], 2,
             "holds U+DCFF"),
        # --- output paths -------------------------------------------------------------------
        Case("--snapshot-out a directory",
             ["run", greet, "-a", ACTIVITIES, "--snapshot-out", f["dir"]], 2,
             "--snapshot-out " + f["dir"] + ": is a directory"),
        Case("schema -o a directory", ["schema", "-o", f["dir"]], 2, "is a directory"),
        Case("snapshot -o a directory", ["snapshot", "i-1", "-o", f["dir"], "--redis-url",
                                         NOWHERE], 2, "is a directory"),
        Case("inspect a directory", ["inspect", f["dir"]], 2, "cannot read: Is a directory"),
        Case("resume a missing file", ["resume", f["dir"] + "/none.json", "--redis-url",
                                       NOWHERE], 2, "cannot read: No such file"),
        # --- Redis URLs (the password is Zq9 + Xw7) ---------------------------------------------
        Case("bad port", ["list", "--redis-url", "redis://ops:Zq9Xw7@127.0.0.1:99999/0"], 3,
             "port that is not a number from 1 to 65535"),
        Case("'/' in the password", ["list", "--redis-url", "redis://:Zq9/Xw7@127.0.0.1:6379"],
             3, "must be percent-encoded"),
        Case("'#' in the password", ["status", "i-1", "--redis-url",
                                     "redis://ops:Zq9#Xw7@127.0.0.1:6379"], 3,
             "must be percent-encoded"),
        Case("unknown scheme", ["list", "--redis-url", "http://ops:Zq9Xw7@127.0.0.1:6379"], 3,
             "http://ops:***@127.0.0.1:6379 is not a Redis URL"),
        Case("bad URL from the environment", ["list"], 3, "must be percent-encoded",
             env={"RUSTYFLOWER_REDIS_URL": "redis://:Zq9#Xw7@127.0.0.1:6379"}),
        Case("unreachable, password in the query",
             ["list", "--redis-url", NOWHERE + "?password=Zq9Xw7"], 3, "password=***"),
        Case("--redis-url before the command", ["--redis-url", "redis://:Zq9/Xw7@h:1", "list"],
             3, "must be percent-encoded"),
        # --- flags, not parameters --------------------------------------------------------------
        Case("export asl names flags", ["export", "asl", "--file", f["event.yaml"], "-o", "-",
                                        "--activity-function-arn", "arn:aws:lambda:x"], 2,
             "needs --token-function-arn"),
        Case("dev with a --redis-url", ["--redis-url", NOWHERE, "dev"], 2,
             "dev starts its own server"),
        Case("bad signing keys", ["inspect", f["latin1.json"]], 3, "RUSTYFLOWER_SIGNING_KEYS",
             env={"RUSTYFLOWER_SIGNING_KEYS": "k1:Zq9Xw7"}),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-input")
    made = {
        "latin1.yaml": b"name: caf\xe9\nstart_at: A\nstates: {A: {type: succeed}}\n",
        "latin1.json": BAD_BYTES,
        "deep.json": ('{"name": "d", "x": ' + DEEP + "}").encode(),
        "deep.yaml": ("name: d\nx: " + DEEP + "\n").encode(),
        "bomb.yaml": ALIAS_BOMB.encode(),
        "huge.yaml": b"name: h\ndescription: " + b"x" * (1024 * 1024) + b"\n",
        "nan.jsonl": b'{"ok": 1}\n{"x": NaN}\n',
        "deep-data.json": DEEP.encode(),
        "event.yaml": EVENT_FLOW.encode(),
    }
    paths = {}
    for name, data in made.items():
        paths[name] = root / name
        paths[name].write_bytes(data)
    paths["dir"] = root / "a-directory"
    paths["dir"].mkdir()
    return paths


def run(case: Case) -> subprocess.CompletedProcess[bytes] | None:
    """The finished process; None when it ran past 30 s (a hang is a failure too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUSTYFLOWER_")}
    args = [os.fsencode(arg) if isinstance(arg, str) else arg for arg in case.args]
    try:
        return subprocess.run(
            [os.fsencode(RUSTYFLOWER), *args],
            cwd=REPO,
            env=env | case.env,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None


def test_bad_input_gets_one_line_and_its_exit_code(files: dict[str, Path]) -> None:
    failures = []
    for case in cases(files):
        result = run(case)
        if result is None:
            failures.append(f"{case.name}: still running after 30 s")
            continue
        stdout = result.stdout.decode("utf-8", "replace")
        stderr = result.stderr.decode("utf-8", "replace")
        lines = [line for line in stderr.splitlines() if line.strip()]
        problems = []
        if result.returncode != case.code:
            problems.append(f"exit {result.returncode}, not {case.code}")
        if len(lines) != 1 or not lines[0].startswith("error: "):
            problems.append("not one 'error:' line")
        if "Traceback" in stderr:
            problems.append("a traceback")
        if lines and case.message not in lines[0]:
            problems.append(f"no {case.message!r}")
        if lines and len(lines[0]) > 400:
            problems.append(f"a line of {len(lines[0])} characters")
        if "Zq9" in stdout + stderr or "Xw7" in stdout + stderr:
            problems.append("the password printed")
        if problems:
            failures.append(f"{case.name}: {'; '.join(problems)}\n    stderr: {stderr[:300]!r}")
    assert not failures, "\n".join(failures)
