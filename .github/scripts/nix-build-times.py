#!/usr/bin/env python3
"""Times each derivation a `nix build` built, from Nix's own activity log.

Usage: nix build --log-format internal-json -L ... 2>&1 | nix-build-times.py [SUMMARY.md]

Nix's internal-json log (one `@nix {...}` object per line on stderr) starts an activity of
type 105 (a build) per derivation, with the .drv path as its first field, and stops it by id.
This prints the log's messages and build-log lines to stderr as they come (so the job log
still reads like `nix build -L`), then appends a markdown table of the derivations built,
slowest first, with their wall-clock seconds, to SUMMARY.md (the job summary) or stdout.
Substituted (downloaded) paths are counted, not timed: they are the cache working.
Exits with 1 when the log holds no line from Nix at all (the pipe is wrong), else 0: the
build's own exit status is the caller's (`set -o pipefail`).
"""

import json
import sys
import time

ACT_BUILD = 105
ACT_SUBSTITUTE = 108
RES_BUILD_LOG_LINE = 101


def derivation_name(drv_path):
    """`/nix/store/<hash>-nton-job-0.1.0.drv` -> `nton-job-0.1.0`."""
    base = drv_path.rsplit("/", 1)[-1]
    if base.endswith(".drv"):
        base = base[: -len(".drv")]
    _hash, _, name = base.partition("-")
    return name or base


def read_log(lines, clock=time.monotonic, echo=sys.stderr):
    """Returns (builds, substituted, nix_lines): builds as [(name, seconds)] in end order."""
    started = {}
    builds = []
    substituted = 0
    nix_lines = 0
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.startswith("@nix "):
            print(line, file=echo)
            continue
        try:
            event = json.loads(line[len("@nix ") :])
        except json.JSONDecodeError:
            print(line, file=echo)
            continue
        nix_lines += 1
        action = event.get("action")
        if action == "start":
            kind = event.get("type")
            fields = event.get("fields") or []
            if kind == ACT_BUILD and fields:
                started[event.get("id")] = (derivation_name(str(fields[0])), clock())
            elif kind == ACT_SUBSTITUTE:
                substituted += 1
            if event.get("text"):
                print(event["text"], file=echo)
        elif action == "stop":
            begun = started.pop(event.get("id"), None)
            if begun is not None:
                name, at = begun
                builds.append((name, clock() - at))
        elif action == "result":
            fields = event.get("fields") or []
            if event.get("type") == RES_BUILD_LOG_LINE and fields:
                print(fields[0], file=echo)
        elif action == "msg":
            print(event.get("msg", ""), file=echo)
    # A build still open when the log ends did not finish (failed or killed): shown as such.
    for name, at in started.values():
        builds.append((name + " (unfinished)", clock() - at))
    return builds, substituted, nix_lines


def markdown(builds, substituted, title):
    out = [f"### {title}", ""]
    if builds:
        out += ["| derivation | seconds |", "|---|---:|"]
        for name, seconds in sorted(builds, key=lambda b: -b[1]):
            out.append(f"| `{name}` | {seconds:.0f} |")
        total = sum(seconds for _, seconds in builds)
        out.append(f"| **{len(builds)} built** | **{total:.0f}** |")
    else:
        out.append("Nothing was built: every path came from a cache.")
    out += ["", f"{substituted} paths substituted from caches.", ""]
    return "\n".join(out)


def main(argv):
    title = "Nix build times"
    args = argv[1:]
    if len(args) >= 2 and args[0] == "--title":
        title, args = args[1], args[2:]
    builds, substituted, nix_lines = read_log(sys.stdin)
    text = markdown(builds, substituted, title)
    if args:
        with open(args[0], "a", encoding="utf-8") as summary:
            summary.write(text + "\n")
    else:
        print(text)
    if nix_lines == 0:
        print(
            "nix-build-times: no @nix line on stdin; run nix with --log-format internal-json 2>&1",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
