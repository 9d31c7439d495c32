// Validates an AsyncAPI document with the official parser (@asyncapi/parser):
// node validate_asyncapi.mjs < document.json  ->  {"valid": bool, "diagnostics": [...]}
import { Parser } from "@asyncapi/parser";

let text = "";
for await (const chunk of process.stdin) text += chunk;
const { document, diagnostics } = await new Parser().parse(text);
const severities = ["error", "warning", "information", "hint"];
console.log(JSON.stringify({
  valid: document !== undefined,
  diagnostics: diagnostics.map((d) => ({
    severity: severities[d.severity] ?? String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path.join("."),
  })),
}));
