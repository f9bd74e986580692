"""Ready-to-run request code for a model, in curl, Python (requests) and JavaScript (fetch).

The group token is read from the NEOMARIL_GROUP_TOKEN environment variable, never
embedded, so the code can be shared and committed safely.
"""

from __future__ import annotations

import json
import shlex

from models_app.models import MLModel

LANGUAGES = ("curl", "python", "javascript")
SAMPLE_INPUT = {"csv": "input.csv", "parquet": "input.parquet", "json": "input.json"}


def generate(model: MLModel, run_url: str, language: str) -> str:
    """Code that calls `run_url` with `model`'s example: pass the row the URL serves (a
    model's live version for its run URL, the version itself for a version's URL)."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    if model.is_sync:
        body = json.dumps(model.schema if model.schema is not None else {}, indent=2)
        return {"curl": _curl_sync, "python": _python_sync, "javascript": _js_sync}[language](run_url, body)
    filename = SAMPLE_INPUT.get(model.input_type, "input.csv")
    return {"curl": _curl_async, "python": _python_async, "javascript": _js_async}[language](
        run_url, filename
    )


# Linux caps one command-line argument at 128 KiB (MAX_ARG_STRLEN): a larger example
# goes to curl on its standard input, from a quoted here-document (nothing expanded).
CURL_ARGUMENT_LIMIT = 100 * 1024
HEREDOC_END = "NEOMARIL_EXAMPLE"


def _curl_sync(url: str, body: str) -> str:
    head = (
        f"curl -sS -X POST {shlex.quote(url)} \\\n"
        '  -H "Authorization: Bearer $NEOMARIL_GROUP_TOKEN" \\\n'
        '  -H "Content-Type: application/json" \\\n'
    )
    if len(body.encode()) <= CURL_ARGUMENT_LIMIT:
        return head + f"  --data {shlex.quote(body)}\n"
    # json.dumps escapes every line break inside a string: the end marker, alone on a
    # line, cannot occur in the body.
    return head + f"  --data-binary @- <<'{HEREDOC_END}'\n{body}\n{HEREDOC_END}\n"


def _python_sync(url: str, body: str) -> str:
    return f"""import os

import requests

payload = {_python_literal(body)}
response = requests.post(
    {url!r},
    json=payload,
    headers={{"Authorization": "Bearer " + os.environ["NEOMARIL_GROUP_TOKEN"]}},
    timeout=60,
)
response.raise_for_status()
print(response.json())
"""


def _js_sync(url: str, body: str) -> str:
    # The example sent as JSON text: an object literal would round integers past 2**53
    # and read a "__proto__" key as the object's prototype, sending other data.
    return f"""// Node.js 18+, as an ES module (a .mjs file: it awaits at the top level); set
// NEOMARIL_GROUP_TOKEN in the environment. The body is JSON text, sent as written.
const body = `{_template_literal(body)}`;
const response = await fetch({json.dumps(url)}, {{
  method: "POST",
  headers: {{
    "Authorization": `Bearer ${{process.env.NEOMARIL_GROUP_TOKEN}}`,
    "Content-Type": "application/json",
  }},
  body,
}});
if (!response.ok) throw new Error(`${{response.status}}: ${{await response.text()}}`);
console.log(await response.text());
"""


def _curl_async(url: str, filename: str) -> str:
    return (
        f"# Start an execution with {filename}, then poll its status URL and download the result.\n"
        f"curl -sS -X POST {shlex.quote(url)} \\\n"
        '  -H "Authorization: Bearer $NEOMARIL_GROUP_TOKEN" \\\n'
        f"  -F file=@{shlex.quote(filename)}\n"
    )


def _python_async(url: str, filename: str) -> str:
    return f"""import os
import time

import requests

headers = {{"Authorization": "Bearer " + os.environ["NEOMARIL_GROUP_TOKEN"]}}
with open({filename!r}, "rb") as f:
    started = requests.post({url!r}, files={{"file": f}}, headers=headers, timeout=600)
started.raise_for_status()
status_url = started.json()["url"]
while (status := requests.get(status_url, headers=headers, timeout=60).json())["status"] not in ("Succeeded", "Failed"):
    time.sleep(2)
if status["status"] == "Failed":
    raise SystemExit(status)
with requests.get(status_url + "/result", headers=headers, stream=True, timeout=600) as result:
    result.raise_for_status()
    saved = os.path.basename(status["output_file"] or "result")  # here, not in the model's subfolder
    with open(saved, "wb") as out:
        for chunk in result.iter_content(1 << 20):
            out.write(chunk)
print("saved", saved)
"""


def _js_async(url: str, filename: str) -> str:
    return f"""// Node.js 18+, as an ES module (a .mjs file); set NEOMARIL_GROUP_TOKEN in the environment.
import {{ readFile, writeFile }} from "node:fs/promises";
import {{ basename }} from "node:path";

const headers = {{ "Authorization": `Bearer ${{process.env.NEOMARIL_GROUP_TOKEN}}` }};
const form = new FormData();
form.append("file", new Blob([await readFile({json.dumps(filename)})]), {json.dumps(filename)});
const started = await fetch({json.dumps(url)}, {{ method: "POST", headers, body: form }});
if (!started.ok) throw new Error(await started.text());
const statusUrl = (await started.json()).url;
let status;
do {{
  await new Promise((resolve) => setTimeout(resolve, 2000));
  status = await (await fetch(statusUrl, {{ headers }})).json();
}} while (!["Succeeded", "Failed"].includes(status.status));
if (status.status === "Failed") throw new Error(JSON.stringify(status));
const result = await fetch(`${{statusUrl}}/result`, {{ headers }});
if (!result.ok) throw new Error(await result.text());
const saved = basename(status.output_file || "result"); // here, not in the model's subfolder
await writeFile(saved, Buffer.from(await result.arrayBuffer()));
console.log("saved", saved);
"""


def _template_literal(text: str) -> str:
    """`text` inside a JavaScript template literal (json.dumps' output is ASCII: no line
    separators to worry about)."""
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${")


def _python_literal(body: str) -> str:
    """JSON text as a Python literal (true/false/null spelled the Python way)."""
    return repr(json.loads(body)) if len(body) > 2000 else _pretty_python(json.loads(body))


def _pretty_python(value, indent: int = 0) -> str:
    pad = "    " * (indent + 1)
    if isinstance(value, dict) and value:
        items = ",\n".join(f"{pad}{key!r}: {_pretty_python(item, indent + 1)}" for key, item in value.items())
        return "{\n" + items + ",\n" + "    " * indent + "}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        items = ",\n".join(f"{pad}{_pretty_python(item, indent + 1)}" for item in value)
        return "[\n" + items + ",\n" + "    " * indent + "]"
    return repr(value)
