"""Tests of nix-build-times.py on an internal-json log shaped like Nix 2.x writes it.

Run: python3 -m unittest discover -s .github/scripts
"""

import importlib.util
import io
import json
import pathlib
import tempfile
import unittest

SCRIPT = pathlib.Path(__file__).with_name("nix-build-times.py")
spec = importlib.util.spec_from_file_location("nix_build_times", SCRIPT)
times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(times)


def nix(**event):
    return "@nix " + json.dumps(event) + "\n"


LOG = [
    nix(action="start", id=1, level=0, type=104, text="", fields=[]),
    nix(action="start", id=2, type=108, text="copying path '/nix/store/aaa-cacert' from 'https://cache.nixos.org'", fields=["/nix/store/aaa-cacert", "https://cache.nixos.org"]),
    nix(action="stop", id=2),
    nix(action="start", id=3, type=105, text="building '/nix/store/bbb-nton-deps-0.1.0.drv'", fields=["/nix/store/bbb-nton-deps-0.1.0.drv", "", 1, 1]),
    nix(action="result", id=3, type=101, fields=["   Compiling serde v1.0.0"]),
    nix(action="start", id=4, type=105, text="building '/nix/store/ccc-nton-job-0.1.0.drv'", fields=["/nix/store/ccc-nton-job-0.1.0.drv", "", 1, 1]),
    nix(action="stop", id=3),
    nix(action="msg", level=0, msg="error: builder for '/nix/store/ddd.drv' failed"),
    "plain text from a wrapper\n",
]


class Clock:
    """Each reading is 10 s after the last one."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 10.0
        return self.now


class NixBuildTimes(unittest.TestCase):
    def test_builds_are_timed_and_the_log_is_echoed(self):
        echo = io.StringIO()
        builds, substituted, nix_lines = times.read_log(LOG, clock=Clock(), echo=echo)
        # deps starts at 10, job at 20, deps stops at 30; job never stops.
        self.assertEqual(builds, [("nton-deps-0.1.0", 20.0), ("nton-job-0.1.0 (unfinished)", 20.0)])
        self.assertEqual(substituted, 1)
        self.assertEqual(nix_lines, 8)
        shown = echo.getvalue()
        self.assertIn("   Compiling serde v1.0.0\n", shown)
        self.assertIn("error: builder for '/nix/store/ddd.drv' failed\n", shown)
        self.assertIn("plain text from a wrapper\n", shown)

    def test_the_table_is_slowest_first_with_a_total(self):
        text = times.markdown([("a", 5.0), ("b", 65.4)], 3, "Nix build times: images")
        lines = text.splitlines()
        self.assertEqual(lines[0], "### Nix build times: images")
        self.assertEqual(lines[4:7], ["| `b` | 65 |", "| `a` | 5 |", "| **2 built** | **70** |"])
        self.assertIn("3 paths substituted from caches.", text)
        self.assertIn("Nothing was built", times.markdown([], 7, "t"))

    def test_a_log_without_nix_lines_fails(self):
        with tempfile.NamedTemporaryFile("r", suffix=".md") as summary:
            import sys

            stdin, stderr = sys.stdin, sys.stderr
            sys.stdin, sys.stderr = io.StringIO("not nix\n"), io.StringIO()
            try:
                self.assertEqual(times.main(["x", summary.name]), 1)
                sys.stdin = io.StringIO("".join(LOG))
                self.assertEqual(times.main(["x", "--title", "T", summary.name]), 0)
            finally:
                sys.stdin, sys.stderr = stdin, stderr
            self.assertIn("### T", summary.read())

    def test_names_drop_the_store_hash(self):
        self.assertEqual(times.derivation_name("/nix/store/0abc-nton-images.drv"), "nton-images")


if __name__ == "__main__":
    unittest.main()
