"""Upload validation: every rejection says what is wrong, where, and never leaks a secret."""

from __future__ import annotations

import textwrap

import pytest

from models_app.validation import source
from models_app.validation.dotenv import parse_dotenv
from models_app.validation.errors import UploadError
from models_app.validation.filenames import check_unique_names, sanitize_filename
from models_app.validation.requirements import parse_requirements, requirements_fingerprint
from models_app.validation.schema import parse_schema
from models_app.validation.source import check_entrypoint_name, check_source


def reject(func, *args, **kwargs) -> UploadError:
    with pytest.raises(UploadError) as info:
        func(*args, **kwargs)
    return info.value


def src(code: str) -> str:
    return textwrap.dedent(code).lstrip()


# --------------------------------------------------------------------------- check_source


@pytest.mark.parametrize("name", ["", "not a name", "class", "1score", "score()"])
def test_entrypoint_name_must_be_a_plain_function_name(name):
    err = reject(check_entrypoint_name, name)
    assert err.field == "model_reference"
    assert err.message == (
        f"{name!r} is not a valid Python function name; give the name of the function to call, e.g. score."
    )


def test_check_source_checks_the_entrypoint_name_first():
    assert reject(check_source, "def score(a, b): pass\n", "class").field == "model_reference"
    check_entrypoint_name("score")


def test_check_source_parses_again_when_another_thread_s_parse_crossed_its_own(monkeypatch):
    """CPython 3.11's AST constructor counts depth per interpreter: another thread's parse
    in the middle of an upload's (a finalizer run by the garbage collector lets it in)
    failed the upload with a SystemError, a 500 (seen in the suite)."""
    real_parse = source.ast.parse
    calls = []

    def crossed_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=375, after=394)")
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(source.ast, "parse", crossed_once)
    check_source("def score(a, b): pass\n", "score")
    assert len(calls) == 2
    calls.clear()
    monkeypatch.setattr(source.ast, "parse", lambda *a, **k: (_ for _ in ()).throw(SystemError("other")))
    with pytest.raises(SystemError, match="other"):  # any other SystemError is a bug to see
        check_source("def score(a, b): pass\n", "score")


@pytest.mark.parametrize(
    "signature",
    [
        "data, base_path",
        "data, base_path, extra=1",
        "data, base_path, *, flag=False",
        "*args",
        "data, *rest",
        "data, base_path, **kwargs",
        "data, base_path, /",
        "data=None, base_path=None",
    ],
)
def test_source_accepts_callable_with_two_positionals(signature):
    check_source(f"import json\n\ndef score({signature}):\n    return {{}}\n", "score")


def test_source_accepts_bom_and_other_functions_and_redefinition():
    code = (
        "\ufeffdef helper(x):\n    return x\n\ndef score(a):\n    pass\n\ndef score(a, b):\n    return {}\n"
    )
    check_source(code, "score")  # the last definition wins, as at import time


def test_source_syntax_error_has_line_number_and_text():
    err = reject(
        check_source, "import json\n\ndef score(data, base_path)\n    return 1\n", "score", filename="app.py"
    )
    assert err.field == "source"
    assert err.message.startswith("app.py does not parse as Python:")
    assert "line 3" in err.message
    assert "def score(data, base_path)" in err.message


def test_source_syntax_error_uses_given_field_and_generic_label():
    err = reject(check_source, "x = (", "score", field="extra_source")
    assert err.field == "extra_source"
    assert err.message.startswith("The source file does not parse as Python")
    assert "line 1" in err.message


def test_source_nul_byte_is_an_upload_error():
    err = reject(check_source, "def score(a, b):\n    return 1\x00\n", "score")
    assert err.field == "source"
    assert "does not parse as Python" in err.message


def test_source_missing_entrypoint_lists_top_level_functions():
    err = reject(
        check_source, "def predict(a, b):\n    pass\n\ndef load():\n    pass\n", "score", filename="app.py"
    )
    assert err.field == "source"
    assert "no top-level function named 'score'" in err.message
    assert "predict, load" in err.message
    assert "module body" in err.message


def test_source_missing_entrypoint_with_no_functions_says_none():
    err = reject(check_source, "x = 1\n", "score")
    assert "Top-level functions found: none" in err.message


def test_source_def_nested_in_if_or_class_does_not_count():
    code = src(
        """
        import sys
        if sys.version_info > (3,):
            def score(a, b):
                return {}
        class Model:
            def score(self, a, b):
                return {}
        """
    )
    err = reject(check_source, code, "score")
    assert "no top-level function named 'score'" in err.message
    assert "not inside an if" in err.message


def test_source_async_def_is_rejected():
    err = reject(check_source, "async def score(a, b):\n    return {}\n", "score")
    assert "async def" in err.message
    assert "plain `def score" in err.message


def test_source_lambda_assignment_is_rejected():
    err = reject(check_source, "x = 1\nscore = lambda a, b: {}\n", "score")
    assert "assigned (line 2)" in err.message
    assert "def score(data, base_path)" in err.message


def test_source_imported_entrypoint_is_rejected():
    err = reject(check_source, "from mylib import score\n", "score")
    assert "imported (line 1)" in err.message


def test_source_later_assignment_shadows_def():
    err = reject(check_source, "def score(a, b):\n    pass\nscore = None\n", "score")
    assert "assigned (line 3)" in err.message


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ("", "it takes only 0"),
        ("data", "it takes only 1"),
        ("a, b, c", "it requires 3"),
        ("a, b, c, d=1", "it requires 3"),
        ("a, b, *, key", "keyword-only argument(s) key"),
        ("*args, key", "keyword-only argument(s) key"),
    ],
)
def test_source_signature_must_accept_two_positionals(signature, expected):
    err = reject(check_source, f"\n\ndef score({signature}):\n    pass\n", "score")
    assert err.field == "source"
    assert "line 3" in err.message
    assert "exactly two positional arguments" in err.message
    assert expected in err.message


@pytest.mark.parametrize("name", ["", "1score", "my-score", "class", "score()", "a.b"])
def test_source_entrypoint_must_be_an_identifier(name):
    err = reject(check_source, "def score(a, b):\n    pass\n", name)
    assert err.field == "model_reference"
    assert repr(name) in err.message
    assert "valid Python function name" in err.message


# --------------------------------------------------------------------------- parse_schema


def test_schema_parses_object():
    assert parse_schema('{"a": 1, "b": [1, 2]}', require_object=True) == {"a": 1, "b": [1, 2]}


def test_schema_may_be_any_json_when_not_required_object():
    assert parse_schema("[1, 2]", require_object=False) == [1, 2]


def test_schema_error_has_line_and_column():
    err = reject(parse_schema, '{\n  "a": 1,\n  "b": \n}', require_object=True)
    assert err.field == "schema"
    assert "line 4, column 1" in err.message
    assert "not valid JSON" in err.message


def test_a_schema_number_with_too_many_digits_gets_advice_for_the_user_not_the_server():
    err = reject(parse_schema, '{"n": ' + "7" * 5000 + "}", require_object=True)
    assert err.message == "The schema has a number with more than 4300 digits: give it as a string."


@pytest.mark.parametrize(
    ("text", "got"),
    [("[1]", "an array"), ('"x"', "a string"), ("3", "a number"), ("true", "a boolean"), ("null", "null")],
)
def test_schema_require_object_says_what_it_got(text, got):
    err = reject(parse_schema, text, require_object=True, field="example")
    assert err.field == "example"
    assert "must be a JSON object" in err.message
    assert err.message.endswith(f"but it is {got}.")


def test_schema_rejects_nan():
    err = reject(parse_schema, '{"a": NaN}', require_object=True)
    assert "NaN is not valid JSON" in err.message


# --------------------------------------------------------------------------- parse_requirements


def test_requirements_are_canonicalised_in_file_order():
    text = src(
        """
        # a comment
        Scikit_Learn==1.3.0   # trailing comment

        pandas >= 1.5, < 3
        Requests[Socks,SECURITY]==2.31.0
        numpy==1.26.4; python_version >= "3.9"
        """
    )
    assert parse_requirements(text) == [
        "scikit-learn==1.3.0",
        "pandas<3,>=1.5",
        "requests[security,socks]==2.31.0",
        'numpy==1.26.4; python_version >= "3.9"',
    ]


def test_requirements_empty_is_fine():
    assert parse_requirements("") == []
    assert parse_requirements("\n# nothing needed\n\n") == []


def test_requirements_line_continuations_and_hashes():
    one, two = "ABCDEF0123" * 6 + "ABCD", "fedcba9876" * 6 + "fedc"  # 64 hex digits each
    text = f"six==1.16.0 \\\n    --hash=sha256:{one} \\\n    --hash=sha256:{two}\nnumpy\\\n==1.0\n"
    assert parse_requirements(text) == [
        f"six==1.16.0 --hash=sha256:{one.lower()} --hash=sha256:{two}",
        "numpy==1.0",
    ]


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "sha256:" + "a" * 63, "sha512:" + "a" * 64, "sha384:" + "a" * 97]
)
def test_a_hash_whose_digest_is_not_its_algorithms_length_is_refused_at_upload(digest):
    """It was accepted, and the build failed later with "Invalid hash digest length"."""
    err = reject(parse_requirements, f"six==1.16.0 --hash={digest}\n")
    assert f"{digest!r} is not a valid hash" in err.message


def test_requirements_direct_https_url_needs_the_admins_switch():
    line = "My_Pkg @ https://example.com/my_pkg-1.0-py3-none-any.whl#sha256=abc\n"
    err = reject(parse_requirements, line)
    assert err.message == (
        "Line 1: My_Pkg is downloaded from https://example.com/my_pkg-1.0-py3-none-any.whl#sha256=abc, "
        "outside the package index; publish it to the index, or ask an administrator to allow download "
        "URLs (NEOMARIL_ALLOW_REQUIREMENT_OPTIONS)."
    )
    assert "download URLs" in reject(parse_requirements, "pkg @ git+https://example.com/pkg.git\n").message
    lines = parse_requirements(line, allow_options=True)
    assert lines == ["my-pkg @ https://example.com/my_pkg-1.0-py3-none-any.whl#sha256=abc"]


def test_requirements_garbage_line_has_number_and_packaging_message():
    err = reject(parse_requirements, "six==1.16.0\n\n# c\nnumpy=>1.0\n")
    assert err.field == "requirements"
    assert err.message.startswith("Line 4:")
    assert "'numpy=>1.0'" in err.message
    assert "Expected" in err.message  # packaging's own explanation


def test_requirements_error_line_number_counts_continuations_from_first_line():
    err = reject(parse_requirements, "six\nbad \\\n  ==spec==\n")
    assert err.message.startswith("Line 2:")


@pytest.mark.parametrize("line", ["-e .", "-e git+https://x/y.git#egg=y", "--editable ./pkg", "-e."])
def test_requirements_editable_refused_even_with_options(line):
    for allow in (False, True):
        err = reject(parse_requirements, f"six\n{line}\n", allow_options=allow)
        assert err.message.startswith("Line 2:")
        assert "editable" in err.message


@pytest.mark.parametrize(
    "line", ["-r other.txt", "-rother.txt", "--requirement=other.txt", "-c constraints.txt"]
)
def test_requirements_includes_refused_even_with_options(line):
    for allow in (False, True):
        err = reject(parse_requirements, f"{line}\n", allow_options=allow)
        assert err.message.startswith("Line 1:")
        assert "includes another file" in err.message


@pytest.mark.parametrize(
    "line",
    [
        "--index-url https://pypi.example.com/simple",
        "-i https://pypi.example.com/simple",
        "--extra-index-url=https://pypi.example.com/simple",
        "-f https://example.com/wheels",
        "--find-links https://example.com/wheels",
        "--trusted-host pypi.example.com",
    ],
)
def test_requirements_options_refused_by_default_and_kept_when_allowed(line):
    err = reject(parse_requirements, f"six\n{line}\n")
    assert err.message.startswith("Line 2:")
    assert "pip options" in err.message
    assert parse_requirements(f"six\n{line}  # our mirror\n", allow_options=True) == ["six", line]


def test_requirements_unknown_option_refused_even_when_allowed():
    err = reject(parse_requirements, "--global-option=--foo\n", allow_options=True)
    assert "--global-option is not supported" in err.message


@pytest.mark.parametrize(
    "line", ["--find-links ./wheels", "-f /srv/wheels", "--index-url file:///srv/simple"]
)
def test_requirements_option_with_local_path_refused_when_allowed(line):
    err = reject(parse_requirements, f"{line}\n", allow_options=True)
    assert "local path" in err.message


@pytest.mark.parametrize(
    "line",
    [
        "./pkg",
        "../pkg",
        "/abs/pkg",
        "~/pkg",
        "file:///x/pkg.whl",
        "pkgs/foo-1.0.whl",
        "foo-1.0.tar.gz",
        "C:\\pkg",
    ],
)
def test_requirements_local_paths_refused(line):
    err = reject(parse_requirements, f"six\n{line}\n", allow_options=True)
    assert err.message.startswith("Line 2:")
    assert "local" in err.message


@pytest.mark.parametrize("line", ["pkg @ file:///x/pkg.whl", "pkg @ ./pkg", "pkg @ /abs/pkg.whl"])
def test_requirements_direct_reference_to_local_file_refused(line):
    err = reject(parse_requirements, f"{line}\n")
    assert err.message.startswith("Line 1:")
    assert "local file" in err.message


def test_requirements_bare_url_must_name_the_package():
    err = reject(parse_requirements, "https://example.com/pkg-1.0.tar.gz\n", allow_options=True)
    assert "name @ https://example.com/pkg-1.0.tar.gz" in err.message


ADVICE_BY_DEFAULT = "; an administrator can allow download URLs with NEOMARIL_ALLOW_REQUIREMENT_OPTIONS."


@pytest.mark.parametrize(
    "line,default,allowed",
    [
        (
            "-e ./mypkg",
            "Line 1: editable installs (-e) are not supported; the environment is built from published "
            "packages only. Pin a version published on the package index (e.g. mypkg==1.2.3)",
            "List the package by name (e.g. mypkg==1.2) or as `mypkg @ https://.../mypkg.whl`.",
        ),
        (
            "numpy @ file:///home/conda/feedstock_root/build_artifacts/numpy_1700000000000/work",
            "Line 1: numpy points at a local file (file:///home/conda/feedstock_root/build_artifacts/"
            "numpy_1700000000000/work), which the build cannot see. Pin a version published on the "
            "package index (e.g. numpy==<version>)",
            "; use an https:// URL or a published version.",
        ),
        (
            "./local-package",
            "Line 1: './local-package' is a local path, which the build cannot see. Publish the package to "
            "the package index and pin its version (e.g. mypkg==1.2.3)",
            "Publish the package to an index, or reference a downloadable file as `name @ https://...`.",
        ),
        (
            "https://example.com/pkg-1.0.tar.gz",
            "Line 1: https://example.com/pkg-1.0.tar.gz is downloaded from outside the package index. Pin a "
            "version published on the package index (e.g. mypkg==1.2.3)",
            "write a URL requirement as `name @ https://example.com/pkg-1.0.tar.gz`",
        ),
    ],
)
def test_requirements_advice_fits_the_admins_switch(line, default, allowed):
    # By default a `name @ URL` line is refused: advising one sent the member into another refusal.
    err = reject(parse_requirements, f"{line}\n")
    assert err.message == default + ADVICE_BY_DEFAULT
    assert " @ " not in err.message and "https:// URL" not in err.message
    assert allowed in reject(parse_requirements, f"{line}\n", allow_options=True).message


def test_requirements_unsupported_url_scheme_refused():
    err = reject(parse_requirements, "pkg @ ftp://example.com/pkg.whl\n")
    assert "unsupported URL scheme 'ftp'" in err.message


def test_requirements_bad_trailing_option_refused():
    err = reject(parse_requirements, "six==1.16.0 --install-option=--x\n")
    assert "--install-option is not supported after a requirement" in err.message
    err = reject(parse_requirements, "six==1.16.0 --hash=md5:abc\n")
    assert "not a valid hash" in err.message


def test_requirements_field_name_is_used():
    assert reject(parse_requirements, "-e .\n", field="deps").field == "deps"


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_across_order_duplicates_and_comments():
    a = parse_requirements("# deps\nsix==1.16.0\nnumpy==1.26.4\n")
    b = parse_requirements("NumPy==1.26.4   # math\n\nsix==1.16.0\nsix==1.16.0\n")
    fp = requirements_fingerprint("3.9.18", a)
    assert fp == requirements_fingerprint("3.9.18", b)
    assert len(fp) == 64
    assert int(fp, 16) >= 0


def test_fingerprint_differs_by_python_version_and_requirements():
    lines = ["six==1.16.0"]
    fp = requirements_fingerprint("3.9.18", lines)
    assert fp != requirements_fingerprint("3.9.17", lines)
    assert fp != requirements_fingerprint("3.10.13", lines)
    assert fp != requirements_fingerprint("3.9.18", ["six==1.15.0"])
    assert requirements_fingerprint("3.9.18", []) != requirements_fingerprint("3.10.13", [])


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize("name", ["app.py", "model.pkl", "my model v2.pkl", "données.csv", "a..b.py"])
def test_filename_accepts_plain_names(name):
    assert sanitize_filename(name, field="source") == name


def test_filename_normalises_nfc_and_strips_whitespace():
    decomposed = "cafe\u0301.py"
    assert sanitize_filename(f"  {decomposed} ", field="source") == "caf\u00e9.py"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../x", "is a path"),
        ("/etc/passwd", "is a path"),
        ("a/b", "is a path"),
        ("C:\\x", "is a path"),
        ("..\\..\\x", "is a path"),
        ("C:/x", "is a path"),
        ("..", "not a file name"),
        ("...", "not a file name"),
        (".", "not a file name"),
        ("a\x00b", "NUL"),
        ("", "no name"),
        ("   ", "no name"),
        ("a\nb.py", "control character U+000A"),
        ("a\x1bb.py", "control character U+001B"),
        ("evil\u202egnp.py", "control character U+202E"),
        ("x" * 129, "129 characters"),
        ("€" * 100 + ".csv", "304 bytes long in UTF-8; shorten it to at most 255 bytes"),
        ("a." + "😀" * 70, "282 bytes long in UTF-8"),
        ("€" * 129, "129 characters long"),  # the character limit is told first
        (".bashrc", "starts with a dot"),
        (".env", "starts with a dot"),
    ],
)
def test_filename_rejections(name, expected):
    err = reject(sanitize_filename, name, field="extra_files")
    assert err.field == "extra_files"
    assert expected in err.message


def test_filename_dotenv_allowed_only_for_env_field():
    assert sanitize_filename(".env", field="env") == ".env"
    assert "starts with a dot" in reject(sanitize_filename, ".envrc", field="env").message
    assert sanitize_filename("x" * 128, field="source") == "x" * 128


def test_filename_of_255_bytes_is_kept():
    name = "€" * 83 + "ab.csv"
    assert len(name.encode()) == 255
    assert sanitize_filename(name, field="source") == name
    assert "256 bytes" in reject(sanitize_filename, "€" * 83 + "abc.csv", field="source").message


def test_unique_names_case_insensitive_names_both_fields():
    check_unique_names({"source": ["app.py"], "model": ["model.pkl"], "extra_files": ["a.csv", "b.csv"]})
    err = reject(
        check_unique_names, {"source": ["app.py"], "model": ["model.pkl"], "extra_files": ["Model.PKL"]}
    )
    assert err.field == "extra_files"
    assert "'Model.PKL' (extra_files)" in err.message
    assert "'model.pkl' (the model field)" in err.message


def test_unique_names_within_one_field():
    err = reject(check_unique_names, {"extra_files": ["data.csv", "DATA.csv"]})
    assert "the same field" in err.message


# --------------------------------------------------------------------------- parse_dotenv


def test_dotenv_parses_all_forms():
    text = src(
        r"""
        # secrets
        PLAIN=value
        SPACED =  padded value   # a comment
        HASH_IN_VALUE=abc#def
        export EXPORTED=yes
        SINGLE='literal \n $HOME # not a comment'
        DOUBLE="line1\nline2\tTab \"quoted\" back\\slash \q"
        DOUBLE_COMMENT="x" # comment after quotes
        EMPTY=
        EMPTY_QUOTED=""
        EQUALS=a=b=c
        URL=postgres://u:p@h:5432/db?sslmode=require
        """
    )
    assert parse_dotenv(text) == {
        "PLAIN": "value",
        "SPACED": "padded value",
        "HASH_IN_VALUE": "abc#def",
        "EXPORTED": "yes",
        "SINGLE": "literal \\n $HOME # not a comment",
        "DOUBLE": 'line1\nline2\tTab "quoted" back\\slash \\q',
        "DOUBLE_COMMENT": "x",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "EQUALS": "a=b=c",
        "URL": "postgres://u:p@h:5432/db?sslmode=require",
    }


def test_dotenv_multiline_quoted_value_and_crlf():
    text = 'KEY="-----BEGIN KEY-----\r\nabc\r\n-----END KEY-----"\r\nNEXT=1\r\n'
    assert parse_dotenv(text) == {"KEY": "-----BEGIN KEY-----\nabc\n-----END KEY-----", "NEXT": "1"}


def test_dotenv_last_duplicate_wins_and_empty_file():
    assert parse_dotenv("A=1\nA=2\n") == {"A": "2"}
    assert parse_dotenv("") == {}
    assert parse_dotenv("\ufeff# only comments\n\n") == {}


def test_dotenv_expands_variables_of_the_lines_above_as_python_dotenv_does():
    text = src(
        r"""
        DB_HOST=db.internal
        DB_USER="scorer"
        DB_URL=postgres://${DB_USER}@${DB_HOST}:5432/risk
        QUOTED="${DB_HOST}\n${PORT:-5432}"
        LITERAL='${DB_HOST} stays'
        EMPTY_DEFAULT=${MISSING:-}
        DB_HOST=changed
        """
    )
    assert parse_dotenv(text) == {
        "DB_HOST": "changed",
        "DB_USER": "scorer",
        "DB_URL": "postgres://scorer@db.internal:5432/risk",  # the value when the line was read
        "QUOTED": "db.internal\n5432",
        "LITERAL": "${DB_HOST} stays",
        "EMPTY_DEFAULT": "",
    }


def test_dotenv_never_expands_the_platforms_own_environment(monkeypatch):
    # python-dotenv would read os.environ: here that is the platform's (keys, database URL).
    monkeypatch.setenv("PLATFORM_ONLY", "platform-secret")
    err = reject(parse_dotenv, "A=1\nURL=${PLATFORM_ONLY}/${A}\n")
    assert err.message.startswith("Line 2: the value of URL uses a ${...} variable that no line above sets")
    assert "single quotes" in err.message
    assert "platform-secret" not in err.message


SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (f"A=1\n{SECRET}\n", 2, "expected KEY=VALUE"),
        (f"A=1\n\nMY-KEY={SECRET}\n", 3, "contains '-'"),
        (f"1KEY={SECRET}\n", 1, "starts with a digit"),
        (f"MY KEY={SECRET}\n", 1, "contains a space"),
        (f"MY\x01KEY={SECRET}\n", 1, "contains the control character U+0001"),
        (f"pass:{SECRET}=x\n", 1, "contains ':'"),
        (f"={SECRET}\n", 1, "is empty"),
        (f"A='{SECRET}\n", 1, "never closed"),
        (f'A="{SECRET}\nB=2\n', 1, "never closed"),
        (f"A='{SECRET}' trailing\n", 1, "after the closing quote"),
        (f'A="x" {SECRET}\n', 1, "after the closing quote"),
        (f"A=1\nB=pa${{{SECRET}}}\n", 2, "no line above sets"),
    ],
)
def test_dotenv_errors_have_line_number_and_never_the_value(text, line, expected):
    err = reject(parse_dotenv, text)
    assert err.field == "env"
    assert err.message.startswith(f"Line {line}:")
    assert expected in err.message
    assert SECRET not in err.message
    assert SECRET not in str(err)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("PATH", "PATH"),
        ("PYTHONPATH", "change how the interpreter starts"),
        ("PYTHONHOME", "change how the interpreter starts"),
        ("PYTHONSTARTUP", "change how the interpreter starts"),
        ("PYTHONANYTHING", "change how the interpreter starts"),
        ("LD_PRELOAD", "load a library"),
        ("LD_LIBRARY_PATH", "native libraries"),
        ("inputFileName", "async execution"),
        ("NEOMARIL_TOKEN", "reserved for the platform"),
    ],
)
def test_dotenv_reserved_keys_refused_with_reason(key, why):
    err = reject(parse_dotenv, f"OK=1\nexport {key}={SECRET}\n", field="env_file")
    assert err.field == "env_file"
    assert err.message.startswith(f"Line 2: {key} cannot be set from .env")
    assert why in err.message
    assert SECRET not in err.message


def test_dotenv_similar_but_harmless_keys_are_allowed():
    assert parse_dotenv("path=1\nMY_PYTHON=2\nINPUTFILENAME=3\n") == {
        "path": "1",
        "MY_PYTHON": "2",
        "INPUTFILENAME": "3",
    }


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("LD_DEBUG_OUTPUT", "LD_* variables"),  # as root, bwrap writes its loader trace there
        ("LD_DEBUG", "LD_* variables"),
        ("LD_PROFILE", "LD_* variables"),
        ("GCONV_PATH", "before it exists"),
        ("GLIBC_TUNABLES", "before it exists"),
        ("LOCPATH", "before it exists"),
        ("HOME", "the job's own folder"),
        ("TMPDIR", "the job's own folder"),
    ],
)
def test_dotenv_keys_read_before_the_sandbox_or_set_per_job_are_refused(key, why):
    """docs/models.md promised every LD_*; the launcher hands the .env to bubblewrap itself."""
    err = reject(parse_dotenv, f"OK=1\n{key}={SECRET}\n")
    assert err.message.startswith(f"Line 2: {key} cannot be set from .env")
    assert why in err.message
    assert SECRET not in err.message


def test_dotenv_value_with_a_nul_byte_is_refused_at_upload():
    """An environment cannot hold it: the runner's launch failed at every build and start."""
    err = reject(parse_dotenv, f"OK=1\nKEY={SECRET}\x00x\n")
    assert err.message == (
        "Line 2: the value of KEY contains a NUL byte, which an environment variable cannot hold; remove it."
    )


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c", "\x1e"])
def test_dotenv_lines_break_only_at_line_ends(separator):
    """Not where str.splitlines() also breaks: a secret holding one stayed cut in two."""
    assert parse_dotenv(f"KEY=a{separator}EVIL=1\nB=2\r\nC=3\rD=4") == {
        "KEY": f"a{separator}EVIL=1",
        "B": "2",
        "C": "3",
        "D": "4",
    }


def test_dotenv_variable_longer_than_a_process_environment_holds_is_refused():
    """Over 128 KiB, exec fails with E2BIG: the build failed saying the interpreter could not start."""
    assert parse_dotenv("KEY=" + "a" * (131071 - 4)) == {"KEY": "a" * 131067}
    err = reject(parse_dotenv, "OK=1\nKEY=" + "a" * 131068 + "\n")
    assert err.message == (
        "Line 2: KEY is 131072 bytes with its name; a process environment holds at most 131071 bytes "
        "per variable. Shorten the value."
    )
