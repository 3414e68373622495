#!/usr/bin/env python3
"""Checks the clients' wire types against the broker's OpenAPI document.

Each type below models a response schema of the document. Every property of
the schema (through allOf and $ref) must be a property of the client's type,
and every property of the client's type must be one of the schema's: a field
added to (or renamed in) a response on the server fails this check until both
clients have it.

    scripts/check-client-types.py OPENAPI_JSON              # the check
    scripts/check-client-types.py --self-test OPENAPI_JSON  # proves it fails on a
        # missing field: adds one to each modelled schema, in turn, and expects a failure

Parses clients/js/src/types.ts (interfaces, `extends`, `type X = A & {…}`; no
dependencies, so it runs without `npm ci`) and the TypedDicts of
clients/python/src/upload_broker/_types.py (with `ast`). Exits 1 listing what
differs. Not checked: optionality and nullability (the clients may be stricter
or looser than the document there), request bodies.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TS_FILE = ROOT / "clients/js/src/types.ts"
PY_FILE = ROOT / "clients/python/src/upload_broker/_types.py"

# client type -> the document's schema it models
TS_TYPES = {
    "UploadResource": "UploadResource",
    "PartUrl": "PartResource",
    "StoredPart": "UploadedPart",
    "ServerProgress": "Progress",
    "ResumeResponse": "ResumeResponse",
    "FoundUpload": "FoundUpload",
}
PY_TYPES = {
    "UploadResource": "UploadResource",
}


# ---------------------------------------------------------------- the document
def schema_properties(doc: dict, schema: dict, seen: tuple = ()) -> set[str]:
    """The property names of an object schema, through $ref and allOf."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return set()
        return schema_properties(doc, doc["components"]["schemas"][name], seen + (name,))
    props = set(schema.get("properties") or {})
    for part in schema.get("allOf") or []:
        props |= schema_properties(doc, part, seen)
    return props


# ---------------------------------------------------------------- TypeScript
def strip_ts_comments(src: str) -> str:
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise SystemExit(f"error: {TS_FILE}: unterminated comment")
            out.append("\n" * src.count("\n", i, j))
            i = j + 2
        elif c in "'\"`":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(src: str, start: int) -> int:
    """Index of the `}` closing the `{` at `start` (strings skipped)."""
    depth, i = 0, start
    while i < len(src):
        c = src[i]
        if c in "'\"`":
            j = i + 1
            while j < len(src) and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise SystemExit(f"error: {TS_FILE}: unbalanced braces")


MEMBER = re.compile(r"^\s*(?:readonly\s+)?([A-Za-z_$][\w$]*|'[^']*'|\"[^\"]*\")\s*\??\s*[:(<]")


def ts_members(body: str) -> set[str]:
    """Names of the members of an object type's body (between its braces).
    Index signatures (`[k: string]: …`) are not names and are left out."""
    members, depth, cur = [], 0, []
    i = 0
    while i < len(body):
        c = body[i]
        if c in "'\"`":
            j = i + 1
            while j < len(body) and body[j] != c:
                j += 2 if body[j] == "\\" else 1
            cur.append(body[i : j + 1])
            i = j + 1
            continue
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif c == "<":
            depth += 1
        elif c == ">" and not (i and body[i - 1] == "="):
            depth -= 1
        if depth == 0 and c in ";,\n":
            members.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    members.append("".join(cur))
    names = set()
    for m in members:
        hit = MEMBER.match(m)
        if hit:
            names.add(hit.group(1).strip("'\""))
    return names


def ts_declarations(src: str) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (names it extends or intersects, literal bodies)."""
    decls: dict[str, tuple[list[str], list[str]]] = {}
    for m in re.finditer(r"\b(?:export\s+)?interface\s+([A-Za-z_$][\w$]*)\s*(?:<[^{]*>)?\s*(?:extends\s+([^{]+))?\{", src):
        open_at = m.end() - 1
        body = src[open_at + 1 : matching_brace(src, open_at)]
        bases = [b.strip() for b in (m.group(2) or "").split(",") if b.strip()]
        decls[m.group(1)] = (bases, [body])
    for m in re.finditer(r"\b(?:export\s+)?type\s+([A-Za-z_$][\w$]*)\s*=\s*", src):
        i, bases, bodies = m.end(), [], []
        while True:
            while i < len(src) and src[i] in " \t\n":
                i += 1
            if i < len(src) and src[i] == "{":
                end = matching_brace(src, i)
                bodies.append(src[i + 1 : end])
                i = end + 1
            else:
                word = re.match(r"[A-Za-z_$][\w$.]*(?:<[^>]*>)?", src[i:])
                if not word:
                    break
                bases.append(word.group(0))
                i += word.end()
            while i < len(src) and src[i] in " \t\n":
                i += 1
            if i < len(src) and src[i] == "&":
                i += 1
                continue
            break
        decls.setdefault(m.group(1), (bases, bodies))
    return decls


def ts_properties(decls: dict, name: str) -> set[str]:
    if name not in decls:
        raise KeyError(name)
    bases, bodies = decls[name]
    props: set[str] = set()
    for b in bodies:
        props |= ts_members(b)
    for base in bases:
        props |= ts_properties(decls, base)
    return props


# ---------------------------------------------------------------- Python
def py_typeddicts(src: str) -> dict[str, set[str]]:
    """TypedDict classes of the module (also through their TypedDict bases) -> field names."""
    classes = {n.name: n for n in ast.parse(src).body if isinstance(n, ast.ClassDef)}

    def base_name(b: ast.expr) -> str:
        return b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")

    def fields(name: str) -> set[str] | None:
        node = classes[name]
        names = [base_name(b) for b in node.bases]
        if "TypedDict" not in names and not any(n in classes and fields(n) is not None for n in names):
            return None
        out = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
        for n in names:
            if n in classes:
                out |= fields(n) or set()
        return out

    return {n: f for n in classes if (f := fields(n)) is not None}


# ---------------------------------------------------------------- the check
def check(doc: dict) -> list[str]:
    problems = []
    schemas = doc.get("components", {}).get("schemas", {})
    ts_decls = ts_declarations(strip_ts_comments(TS_FILE.read_text()))
    py_decls = py_typeddicts(PY_FILE.read_text())
    clients = [
        ("TypeScript", TS_FILE, TS_TYPES, lambda n: ts_properties(ts_decls, n)),
        ("Python", PY_FILE, PY_TYPES, lambda n: py_decls[n]),
    ]
    for client, path, types, props_of in clients:
        rel = path.relative_to(ROOT)
        for type_name, schema_name in types.items():
            if schema_name not in schemas:
                problems.append(f"{client}: the document has no schema {schema_name} (modelled by {type_name} in {rel}); update {Path(__file__).name}")
                continue
            want = schema_properties(doc, schemas[schema_name])
            if not want:
                problems.append(f"{client}: schema {schema_name} has no properties (a parse problem?)")
                continue
            try:
                have = props_of(type_name)
            except KeyError as e:
                problems.append(f"{client}: {rel} declares no type {e} (modelling {schema_name})")
                continue
            for p in sorted(want - have):
                problems.append(f"{client}: {type_name} ({rel}) lacks `{p}` of the document's {schema_name}")
            for p in sorted(have - want):
                problems.append(f"{client}: {type_name} ({rel}) has `{p}`, which the document's {schema_name} does not")
    return problems


def main() -> int:
    args = sys.argv[1:]
    self_test = bool(args) and args[0] == "--self-test"
    if self_test:
        args = args[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    doc = json.loads(Path(args[0]).read_text())
    problems = check(doc)
    if problems:
        print("error: the clients' wire types differ from the OpenAPI document:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    n = len(TS_TYPES) + len(PY_TYPES)
    print(f"the clients' {n} wire types cover their OpenAPI schemas ({', '.join(sorted(set(TS_TYPES.values())))})", file=sys.stderr)
    if self_test:
        # A property added to each modelled schema (the first schema of an allOf
        # when it has its own properties, else the schema itself) must be reported.
        for schema_name in sorted(set(TS_TYPES.values()) | set(PY_TYPES.values())):
            doctored = copy.deepcopy(doc)
            s = doctored["components"]["schemas"][schema_name]
            target = next((p for p in s.get("allOf") or [] if "properties" in p), s)
            target.setdefault("properties", {})["selfTestField"] = {"type": "string"}
            found = [p for p in check(doctored) if "selfTestField" in p]
            clients = {p.split(":")[0] for p in found}
            expected = {c for c, types in (("TypeScript", TS_TYPES), ("Python", PY_TYPES)) if schema_name in types.values()}
            if clients != expected:
                print(f"error: the self-test added `selfTestField` to {schema_name}; the check reported it for {sorted(clients)}, not {sorted(expected)}", file=sys.stderr)
                return 1
        print(f"the client types check reports a field missing from any of the {len(set(TS_TYPES.values()) | set(PY_TYPES.values()))} modelled schemas", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
