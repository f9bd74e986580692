"""Deploy models and call them: :class:`NeomarilModelClient`, :class:`NeomarilModel` and
its versions (:class:`NeomarilModelVersion`: a new upload behind the model's run URL).

.. code:: python

    from neomaril_codex.model import NeomarilModelClient

    client = NeomarilModelClient()   # NEOMARIL_URL + NEOMARIL_USER/NEOMARIL_PASSWORD (or NEOMARIL_TOKEN)
    model = client.create_model('Teste notebook Sync', 'score', PATH+'app.py', PATH+'model.pkl',
                                PATH+'requirements.txt', schema=PATH+'schema.json',
                                python_version='3.9', operation="Sync", group='datarisk')
    model.predict({'key': 'value'})  # with NEOMARIL_GROUP_TOKEN, model.set_token() or group_token=
    v2 = model.add_version('score', PATH+'app.py', PATH+'model_v2.pkl', PATH+'requirements.txt',
                           schema=PATH+'schema.json')  # live once Deployed; model.set_live(1) rolls back
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from neomaril_codex._args import first_token, whole_number
from neomaril_codex._http import Connection, dumps, json_of
from neomaril_codex._http import env as _env
from neomaril_codex._parts import Parts, PathLike, existing_file
from neomaril_codex.base import (
    BaseNeomarilClient,
    NeomarilExecution,
    backoff,
    failure_with_log,
    log_tail,
    polled,
    wait_finished,
)
from neomaril_codex.exceptions import (
    AuthenticationError,
    BuildError,
    ExecutionError,
    InputError,
    NotFoundError,
    ServerError,
    StateError,
    WaitTimeout,
)

__all__ = ["NeomarilModel", "NeomarilModelClient", "NeomarilModelVersion"]

logger = logging.getLogger(__name__)

MODEL_STATES = ("Ready", "Building", "Deployed", "Failed", "Disabled", "Deleted")
# wait_ready's polls: a build that reuses an environment is over in a few seconds, so the
# polls come every 0.25 s for the first 5 s (Deployed is seen ~0.1 s after it happened,
# not ~0.6 s as with waits growing from the start); a first build may install for
# minutes, so they then grow by a quarter each time, up to 10 s apart.
BUILD_POLLS = {"first": 0.25, "factor": 1.25, "cap": 10.0, "steady_for": 5.0}
OPERATIONS = {"sync": "Sync", "async": "Async"}
LANGUAGES = ("curl", "python", "javascript")


def _model_parts(
    fields: List[Tuple[str, str]],
    *,
    source_file: Optional[PathLike] = None,
    model_file: Optional[PathLike] = None,
    requirements_file: Optional[PathLike] = None,
    schema: Union[PathLike, Dict[str, Any], List[Any], None] = None,
    env: Optional[PathLike] = None,
    sample_file: Optional[PathLike] = None,
    extra_files: Union[PathLike, Sequence[PathLike], None] = None,
    required: Sequence[str] = (),
) -> Parts:
    """The upload of a model (create_model's, and promote_model's from a training run):
    `fields`, then its files, and `schema` as JSON text (a dict or list) or a file.

    An argument that is None is left out, unless named in `required`.

    Raises:
        InputError: every missing or wrong file, at once.
    """
    parts = Parts(fields)
    for field, argument, value in (
        ("source", "source_file", source_file),
        ("model", "model_file", model_file),
        ("requirements", "requirements_file", requirements_file),
    ):
        if value is not None or argument in required:
            parts.file(field, argument, value)
    if isinstance(schema, (dict, list)):
        parts.fields.append(("schema", dumps(schema)))
    else:
        parts.optional("schema", "schema", schema)
    parts.optional("env", "env", env)
    parts.optional("sample", "sample_file", sample_file)
    parts.extras(extra_files)
    parts.check()
    return parts


def _is_a_sample_input(schema: Any) -> bool:
    """A schema that is a file of input rather than a JSON example (.csv, .parquet…)."""
    if schema is None or isinstance(schema, (dict, list)):
        return False
    return not str(schema).lower().endswith(".json")


def _wait_deployed(
    get_status: Callable[[], str],
    what: str,
    failure: Callable[[], BuildError],
    restart: str,
    timeout: float,
) -> None:
    """Wait until a model or one of its versions is Deployed: its wait_ready.

    Args:
        get_status: asks its status now.
        what: it, for people: "model 'x' (M…)", "version 2 of model 'x' (M…)".
        failure: the BuildError of its failed build (with the end of its log).
        restart: the call that restarts it, for the message of a Disabled one.
        timeout: seconds to wait at most.
    """
    what = what[:1].upper() + what[1:]
    deadline = time.monotonic() + timeout
    last = None
    waits = backoff(**BUILD_POLLS)
    while True:
        status = polled(get_status, what, deadline, logger)
        if status != last:
            if last is not None:
                waits = backoff(**BUILD_POLLS)
            last = status
            logger.info("%s is %s", what, status, stacklevel=2)
        if status == "Deployed":
            return
        if status == "Failed":
            raise failure()
        if status in ("Disabled", "Deleted"):
            raise StateError(
                f"{what} is {status}; it will not become Deployed"
                + (f" unless restarted ({restart})." if status == "Disabled" else ".")
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"{what} is still {status} after {timeout:g} s.")
        time.sleep(min(next(waits), remaining))


def _failed_build(what: str, info: Dict[str, Any], get_logs: Callable[[], str]) -> BuildError:
    """The BuildError of a Failed build of `what`: its status message, then the end of its log."""
    try:
        tail = log_tail(get_logs())
    except Exception as exc:  # the failure matters more than its log
        tail = f"(the build log could not be read: {exc})"
    reason = info.get("status_message") or "see the build log"
    message = f"The build of {what} failed: {reason}"
    if tail:
        message += f"\n--- end of the build log ---\n{tail}"
    return BuildError(message, log=tail, body=dict(info))


class NeomarilModel:
    """A model deployed on Neomaril.

    Get one from :meth:`NeomarilModelClient.create_model` or
    :meth:`NeomarilModelClient.get_model`. Managing it (status, logs, disable…) uses
    your login; calling it (``predict``) uses the **group token** of its group, taken
    from ``predict(..., group_token=)``, else :meth:`set_token`, else the
    ``NEOMARIL_GROUP_TOKEN`` environment variable.

    Attributes:
        model_hash: the model's id (``M`` + 32 hex digits).
        name: its name.
        group: the group that owns it.
        operation: ``Sync`` (JSON in, JSON out) or ``Async`` (a file in, a file out).
    """

    def __init__(
        self, connection: Connection, info: Dict[str, Any], *, group_token: Optional[str] = None
    ) -> None:
        self._conn = connection
        self._info: Dict[str, Any] = dict(info)
        self._token = group_token
        self.model_hash: str = info["hash"]
        self.name: str = info.get("name", "")
        self.group: str = info.get("group", "")
        self.operation: str = info.get("operation", "Sync")
        self.python_version: Optional[str] = info.get("python_version")
        self.model_reference: Optional[str] = info.get("model_reference")

    @property
    def model_id(self) -> str:
        """The model's hash, under the name the original product's later SDKs give it."""
        return self.model_hash

    def __repr__(self) -> str:
        return (
            f"<NeomarilModel {self.name!r} {self.model_hash} {self.operation} "
            f"{self._info.get('status', '?')} group={self.group!r}>"
        )

    # What it is --------------------------------------------------------------------------

    def model_info(self) -> Dict[str, Any]:
        """Everything the server says about the model (files, schema, requirements, the
        names of its secrets, last build, URLs…), fetched now."""
        self._info = self._conn.get_json(f"/models/{self.model_hash}", ())
        return dict(self._info)

    def status(self) -> str:
        """The model's current status: Ready, Building, Deployed, Failed, Disabled or Deleted.

        ``model_info()["status_message"]`` says why, when there is a reason.
        """
        answer = self._conn.get_json(f"/models/{self.model_hash}/status", ("status",))
        self._info.update(answer)
        return answer["status"]

    @property
    def docs(self) -> str:
        """URL of the model's OpenAPI (Swagger) page, for the members of its group (they
        log in to the portal to see it); ``share_docs()`` makes a link for anyone else."""
        return self._info.get("docs_url") or f"{self._conn.url}/models/{self.model_hash}/docs/"

    def share_docs(self, expires_in: Union[int, datetime.timedelta] = datetime.timedelta(days=7)) -> str:
        """A link to the model's Swagger page that opens without logging in, to send to
        the people who will call it (calling still needs the group token).

        Only the group's owners (and admins) can make one. The link is shown only now;
        it can be listed and revoked on the model's page or through the API.

        Args:
            expires_in: the link's lifetime, in seconds or as a ``timedelta``
                (5 minutes to 90 days; 7 days by default).

        Returns:
            The link's URL.
        """
        seconds = expires_in.total_seconds() if isinstance(expires_in, datetime.timedelta) else expires_in
        answer = self._conn.post_json(
            f"/models/{self.model_hash}/share-links", {"expires_in": int(seconds)}, ("url",)
        )
        return answer["url"]

    @property
    def run_url(self) -> str:
        """The URL that calls the model (``POST`` with the group token)."""
        return self._info.get("run_url") or self._conn.absolute(f"/run/{self.model_hash}")

    @property
    def schema(self) -> Any:
        """The example input the model was deployed with (Sync), if known."""
        if "schema" not in self._info:
            self.model_info()
        return self._info.get("schema")

    def get_logs(self, build: Optional[int] = None) -> str:
        """The build log (uv's output and the smoke test), timestamped; the latest build by default."""
        params = {"build": build} if build is not None else None
        return self._conn.get_json(f"/models/{self.model_hash}/logs", ("log",), params=params)["log"]

    def wait_ready(self, timeout: float = 1800.0) -> NeomarilModel:
        """Wait until the model is Deployed, polling its status every 0.25 s for 5 s,
        then with a growing interval; a new status (Building after a long queue) starts
        the quick polls again.

        Args:
            timeout: seconds to wait at most (a first build with big requirements can
                take minutes).

        Returns:
            The model itself, ready to predict.

        Raises:
            BuildError: the build failed; the message has the reason and the end of the build log.
            StateError: the model was disabled or deleted.
            WaitTimeout: not Deployed after `timeout` seconds.
        """
        _wait_deployed(self.status, self._what, self._build_failure, "model.restart()", timeout)
        return self

    @property
    def _what(self) -> str:
        return f"model '{self.name}' ({self.model_hash})" if self.name else f"model {self.model_hash}"

    def _build_failure(self) -> BuildError:
        return _failed_build(self._what, self._info, self.get_logs)

    # Calling it --------------------------------------------------------------------------

    def set_token(self, group_token: str) -> None:
        """Use this group token to call the model (wins over ``NEOMARIL_GROUP_TOKEN``)."""
        self._token = group_token

    def _known_token(self, per_call: Optional[str] = None) -> Optional[str]:
        """The group token to use: `per_call`, else set_token's, else NEOMARIL_GROUP_TOKEN's;
        stripped, and checked to be sendable (InputError, without the token, if not)."""
        return first_token(
            (per_call, "group_token="),
            (self._token, "model.set_token()"),
            (_env("NEOMARIL_GROUP_TOKEN"), "NEOMARIL_GROUP_TOKEN"),
        )

    def _group_token(self, per_call: Optional[str] = None) -> str:
        token = self._known_token(per_call)
        if not token:
            raise AuthenticationError(
                f"No group token to call model {self.model_hash}: pass group_token=, call "
                f"model.set_token(...), or set NEOMARIL_GROUP_TOKEN (the token of group '{self.group}')."
            )
        return token

    def predict(
        self,
        data: Any,
        group_token: Optional[str] = None,
        wait_complete: bool = False,
        *,
        timeout: Optional[float] = None,
    ) -> Any:
        """Call the model.

        Sync models take one input — a dict (or a JSON string, or the path of a JSON
        file, or a one-row pandas DataFrame/Series) — and return the model's answer,
        usually a dict. Async models take the path of a file and return a
        :class:`~neomaril_codex.base.NeomarilExecution` to follow (``wait_ready``,
        ``download_result``).

        Args:
            data: the input, as above.
            group_token: the token of the model's group, for this call only (whitespace
                around it, such as the newline of a file it was read from, is ignored).
            wait_complete: Async: return the execution once it has Succeeded (its
                ``wait_ready()``, up to an hour); the original product's argument. No
                effect on a Sync model, whose answer is complete when returned.
            timeout: seconds to wait for a Sync answer, or a ``(connect, read)`` pair
                (default: the client's timeout).

        Raises:
            ModelError: the model's code raised (the message has its traceback).
            StateError: the model is not Deployed.
            AuthenticationError: no group token, or a wrong one (PermissionDeniedError:
                a token of another group).
            InputError: a wrong `data`, `wait_complete` or `timeout`, or a token with
                spaces, control or non-Latin-1 characters inside (the message never shows it).
            NetworkError: no answer within the timeout, or the connection was dropped
                (the model may have run: a call is never sent twice).
            ExecutionError: with `wait_complete`, the Async execution Failed (its error
                and the end of its log).
            WaitTimeout: with `wait_complete`, the execution had not finished after an hour.
        """
        if not isinstance(wait_complete, bool):
            raise InputError(
                f"wait_complete must be True or False, got {wait_complete!r} "
                "(the seconds to wait for a Sync answer go in timeout=)."
            )
        answer = self._call(f"/run/{self.model_hash}", self.operation, data, group_token, timeout)
        if wait_complete and isinstance(answer, NeomarilExecution):
            answer.wait_ready()
        return answer

    __call__ = predict

    def _call(
        self, path: str, operation: str, data: Any, group_token: Optional[str], timeout: Optional[float]
    ) -> Any:
        """POST `data` to `path`, a run URL of this model (its own, or one version's), with
        its group token: a Sync answer, or the execution an Async input started."""
        token = self._group_token(group_token)
        headers = self._conn.group_headers(token)
        if operation == "Async":
            execution = self._start_execution(path, data, token, headers)
            logger.info(
                "Execution %s started. Use the id to check its status.", execution.execution_id, stacklevel=2
            )
            return execution
        response = self._conn.request(
            "POST",
            path,
            data=_sync_body(data),
            headers={**headers, "Content-Type": "application/json"},
            timeout=timeout,
        )
        return json_of(response)

    def _start_execution(
        self, run_path: str, data: Any, token: str, headers: Dict[str, str]
    ) -> NeomarilExecution:
        problems: List[str] = []
        if isinstance(data, (str, os.PathLike)):
            path = existing_file("data", data, problems)
        else:
            path = None
            problems.append(f"data: an Async model takes the path of a file, got {type(data).__name__}")
        if path is None:
            raise InputError("; ".join(problems))
        response = self._conn.upload(
            run_path,
            fields=[],
            files=[("file", path.name, path)],
            headers=headers,
            label=f"Uploading {path.name}",
        )
        answer = json_of(response)
        number = answer.get("execution_id") if isinstance(answer, dict) else None
        if isinstance(number, bool) or not isinstance(number, (int, str)) or not str(number).isdigit():
            raise ServerError(
                f"POST {response.url} accepted {path.name} (HTTP {response.status_code}) but its answer "
                f"has no execution_id to follow it by: {dumps(answer)[:200]}",
                status_code=response.status_code,
                body=answer if isinstance(answer, dict) else None,
            )
        return NeomarilExecution(self._conn, self.model_hash, int(number), group_token=token, info=answer)

    def get_execution(self, execution_id: int, group_token: Optional[str] = None) -> NeomarilExecution:
        """An execution of this (Async) model, by its number (an int, or a string of one)."""
        number = whole_number("execution_id", execution_id)
        execution = NeomarilExecution(
            self._conn, self.model_hash, number, group_token=self._known_token(group_token)
        )
        execution.execution_info()
        return execution

    def get_model_execution(self, exec_id: Union[int, str]) -> NeomarilExecution:
        """The original product's name for :meth:`get_execution`:
        ``model.get_model_execution('1')``."""
        return self.get_execution(whole_number("exec_id", exec_id))

    def list_executions(self, status: Optional[str] = None) -> List[Dict[str, Any]]:
        """This model's executions, newest first (all pages), optionally only those in `status`."""
        token = self._known_token()
        headers = self._conn.group_headers(token) if token else None
        params = {"status": status} if status else {}
        return list(self._conn.paginate(f"/run/{self.model_hash}/executions", params, headers=headers))

    def health(self, group_token: Optional[str] = None) -> Dict[str, Any]:
        """Whether the model is deployed and (Sync) warm on the server: ``{"deployed": True,
        "warm": True, "runners": [...]…}``. Uses the group token when one is known, else your login."""
        token = self._known_token(group_token)
        headers = self._conn.group_headers(token) if token else None
        # 503 is the answer for "not deployed": a state, not a failure.
        return self._conn.get_json(f"/run/{self.model_hash}/health", (), headers=headers, ok=(503,))

    def generate_predict_code(self, language: str = "curl") -> str:
        """Ready-to-run code that calls this model without the SDK.

        Args:
            language: ``curl``, ``python`` (requests) or ``javascript`` (fetch).

        Returns:
            The code (also logged at INFO). It reads the group token from the
            ``NEOMARIL_GROUP_TOKEN`` environment variable, so it can be shared safely.
        """
        if language not in LANGUAGES:
            raise InputError(f"language must be one of {', '.join(LANGUAGES)}; got {language!r}.")
        code = self._conn.get_json(
            f"/models/{self.model_hash}/code", (language,), params={"language": language}
        )[language]
        logger.info("Code to call model %s (%s):\n%s", self.model_hash, language, code)
        return code

    # Lifecycle ---------------------------------------------------------------------------

    def _act(self, action: str) -> str:
        answer = self._conn.post_json(f"/models/{self.model_hash}/{action}", fields=("status",))
        self._info.update(answer)
        return answer["status"]

    def disable(self) -> str:
        """Stop serving: calls answer 409 until restarted; files are kept. Returns the new status."""
        status = self._act("disable")
        logger.info("Model %s disabled", self.model_hash)
        return status

    def restart(self, wait_for_ready: bool = False) -> str:
        """Build the model again (its environment is reused when unchanged) and serve it.

        Returns the status (``Ready``, or ``Deployed`` with `wait_for_ready`).
        """
        status = self._act("restart")
        logger.info("Model %s restarted: a new build is queued", self.model_hash)
        if wait_for_ready:
            self.wait_ready()
            return "Deployed"
        return status

    def restart_model(self, wait_for_ready: bool = True) -> str:
        """The original product's name for :meth:`restart`, which waits by default as the
        original's did: ``model.restart_model()``, ``model.restart_model(False)``.

        Returns the status (``Deployed`` when waiting, else ``Ready``); raises what
        :meth:`wait_ready` raises.
        """
        return self.restart(wait_for_ready)

    def delete(self) -> None:
        """Delete the model: its files and secrets are removed; its hash is never reused."""
        answer = json_of(self._conn.request("DELETE", f"/models/{self.model_hash}"), ())
        self._info.update(answer)
        logger.info("Model %s deleted", self.model_hash)

    # Versions ----------------------------------------------------------------------------

    @property
    def _versions_path(self) -> str:
        return f"/models/{self.model_hash}/versions"

    def add_version(
        self,
        model_reference: str,
        source_file: PathLike,
        model_file: PathLike,
        requirements_file: PathLike,
        schema: Union[PathLike, Dict[str, Any], None] = None,
        extra_files: Optional[Sequence[PathLike]] = None,
        env: Optional[PathLike] = None,
        python_version: Optional[str] = None,
        input_type: Optional[str] = None,
        wait_for_ready: bool = True,
        *,
        sample_file: Optional[PathLike] = None,
    ) -> NeomarilModelVersion:
        """Upload a new version of this model: new files, requirements or Python, the same
        name, group, operation and run URL.

        The run URL keeps serving the live version while the new one builds; the new one
        goes live once Deployed (a version that fails never does). :meth:`set_live` goes
        back to an earlier version.

        Args:
            model_reference, source_file, model_file, requirements_file, schema,
            extra_files, input_type, sample_file: as in
                :meth:`NeomarilModelClient.create_model`.
            python_version: the Python the version runs on; by default the live version's.
            env: a ``.env`` file of secrets; without one, the version keeps the live version's.
            wait_for_ready: wait until the version is Deployed (and so live).

        Returns:
            The new :class:`NeomarilModelVersion` (Deployed when `wait_for_ready`).

        Raises:
            InputError: a file is missing, or the server refused the upload (every
                problem is in the message and in ``error.errors``).
            BuildError: with `wait_for_ready`, the version's build failed (the message
                ends with its build log); the live version keeps serving.
        """
        fields = [("model_reference", model_reference)]
        if input_type:
            fields.append(("input_type", input_type))
        parts = _model_parts(
            fields,
            source_file=source_file,
            model_file=model_file,
            requirements_file=requirements_file,
            schema=schema,
            env=env,
            sample_file=sample_file,
            extra_files=extra_files,
            required=("source_file", "model_file", "requirements_file"),
        )
        if python_version is None:
            python_version = self.model_info()["python_version"]
        parts.fields.insert(1, ("python_version", str(python_version)))
        response = self._conn.upload(
            self._versions_path,
            fields=parts.fields,
            files=parts.files,
            label=f"Uploading a version of model '{self.name}'",
        )
        version = NeomarilModelVersion(self, json_of(response, ("version",)))
        logger.info(
            "Version %s of model '%s' (%s) uploaded; it is being built and goes live once Deployed.",
            version.version,
            self.name,
            self.model_hash,
        )
        if wait_for_ready:
            version.wait_ready()
        return version

    def versions(self) -> List[NeomarilModelVersion]:
        """Every version of the model, newest first (all pages); ``version.live`` marks the
        one its run URL serves."""
        return [NeomarilModelVersion(self, info) for info in self._conn.paginate(self._versions_path)]

    def get_version(self, version: int) -> NeomarilModelVersion:
        """Version number `version` of the model (1 is its first upload).

        Raises:
            NotFoundError: the model has no such version.
        """
        number = self._version_number(version)
        return NeomarilModelVersion(
            self, self._conn.get_json(f"{self._versions_path}/{number}", ("version",))
        )

    @property
    def live_version(self) -> int:
        """The number of the version the model's run URL serves, asked now."""
        self.status()
        return int(self._info["version"])

    def set_live(self, version: Union[int, NeomarilModelVersion]) -> NeomarilModelVersion:
        """Make a Deployed version the one the model's run URL serves: a rollback (or a
        roll forward) in one call. The version's runners are started first, so the first
        call after the switch is not a cold one.

        Args:
            version: its number, or a :class:`NeomarilModelVersion` of this model.

        Returns:
            The version, now live.

        Raises:
            StateError: the version is not Deployed (the server's message says its status).
            NotFoundError: the model has no such version.
        """
        number = self._version_number(version)
        info = self._conn.post_json(f"{self._versions_path}/{number}/live", fields=())
        self._info["version"] = number
        logger.info("Model '%s' (%s) now serves version %s", self.name, self.model_hash, number)
        if isinstance(version, NeomarilModelVersion):
            version._info = dict(info)
            return version
        return NeomarilModelVersion(self, info)

    def _version_number(self, version: Union[int, NeomarilModelVersion]) -> int:
        if isinstance(version, NeomarilModelVersion):
            if version.model_hash != self.model_hash:
                raise InputError(f"{version!r} is a version of another model, not of {self.model_hash}.")
            return version.version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InputError(
                f"version must be a version number (1, 2, …) or a NeomarilModelVersion, got {version!r}."
            )
        return version

    # Monitoring ---------------------------------------------------------------------------

    @property
    def _monitoring_path(self) -> str:
        return f"/monitoring/{self.model_hash}"

    def register_monitoring(
        self,
        preprocess_reference: str,
        shap_reference: Optional[str] = None,
        configuration_file: Union[PathLike, Dict[str, Any], None] = None,
        preprocess_file: Optional[PathLike] = None,
        requirements_file: Optional[PathLike] = None,
        *,
        webhook_url: Optional[str] = None,
        wait_for_ready: bool = False,
    ) -> str:
        """Register the model for indirect monitoring (or replace its registration).

        The server checks the registration in the background (status Unvalidated →
        Validating → Validated or Invalidated): it reads the reference training run's
        data and calls your preprocess on the model's example and the build's answer. Once
        Validated, each period (a Day, Week, Month or Year of recorded calls) is
        preprocessed and compared with the reference, column by column.

        Args:
            preprocess_reference: the preprocess function in `preprocess_file`, called as
                ``preprocess(input, output)`` and returning ``(features_df, outputs_df)``.
            shap_reference: optionally, a function ``shap(features_df, model_path)`` in the
                same file returning a DataFrame of SHAP values, one column per input column.
            configuration_file: the configuration (``Period``, ``TrainData``, ``InputCols``,
                ``OutputCols``): a dict or the path of a JSON file.
            preprocess_file: the ``.py`` file defining the preprocess.
            requirements_file: extra packages the preprocess needs, on top of the model's.
            webhook_url: an address that receives a JSON notice when a period drifts.
            wait_for_ready: wait until it is Validated (see :meth:`wait_monitoring`).

        Returns:
            The model hash: the monitoring's id (a model has one monitoring).

        Raises:
            InputError: a file is missing (all are reported at once, before anything is
                sent), or the server refused the registration (``error.errors`` has every
                field's messages).
            ExecutionError: with `wait_for_ready`, the registration was Invalidated.
        """
        parts = Parts([("preprocess_reference", preprocess_reference)])
        if shap_reference:
            parts.fields.append(("shap_reference", shap_reference))
        if webhook_url:
            parts.fields.append(("webhook_url", webhook_url))
        with tempfile.TemporaryDirectory(prefix="neomaril-monitoring-") as scratch:
            if configuration_file is None:
                parts.problems.append(
                    "configuration_file: required (the monitoring configuration: a dict or the path of a JSON file)"
                )
            else:
                parts.json_file("configuration", "configuration_file", configuration_file, Path(scratch))
            if preprocess_file is None:
                parts.problems.append(
                    f"preprocess_file: required (the .py file defining {preprocess_reference})"
                )
            else:
                parts.file("preprocess", "preprocess_file", preprocess_file)
            parts.optional("requirements", "requirements_file", requirements_file)
            parts.check()
            answer = json_of(
                self._conn.upload(
                    self._monitoring_path,
                    fields=parts.fields,
                    files=parts.files,
                    label=f"Uploading the monitoring of model {self.model_hash}",
                ),
                ("model",),
            )
        logger.info(
            "Monitoring of model %s registered (%s period); it is %s while the server checks it.",
            self.model_hash,
            answer.get("period"),
            answer.get("status"),
        )
        if wait_for_ready:
            self.wait_monitoring()
        return answer["model"]

    def get_monitoring(self) -> Dict[str, Any]:
        """The model's monitoring, fetched now: ``status`` (Unvalidated, Validating,
        Validated or Invalidated), ``message`` (why it is Invalidated), the configuration,
        thresholds, ``log`` and ``last_period``.

        Raises:
            NotFoundError: the model is not monitored.
        """
        return self._conn.get_json(self._monitoring_path, ())

    def wait_monitoring(self, timeout: float = 1800.0) -> Dict[str, Any]:
        """Wait until the monitoring is Validated, polling with a growing interval.

        Args:
            timeout: seconds to wait at most (a first validation builds an environment).

        Returns:
            The monitoring (:meth:`get_monitoring`), Validated.

        Raises:
            ExecutionError: it was Invalidated; the message says why, then the end of its log.
            WaitTimeout: still not checked after `timeout` seconds.
        """
        what = f"The monitoring validation of model {self.model_hash}"

        def failure(info: Dict[str, Any]) -> ExecutionError:
            return failure_with_log(what, info.get("message"), lambda: info.get("log") or "", info)

        return wait_finished(
            self.get_monitoring,
            "status",
            what,
            failure,
            timeout,
            logger,
            done=("Validated",),
            failed=("Invalidated",),
        )

    def run_monitoring(
        self, date: Union[str, datetime.date, None] = None, wait: bool = False, timeout: float = 3600.0
    ) -> Dict[str, Any]:
        """Run the period containing `date` now (the current one by default).

        A finished period runs again; one already waiting or running is returned as it is.

        Args:
            date: a day (``'2026-05-26'``, a ``datetime.date``) or a moment (an ISO
                datetime string, a ``datetime.datetime``) inside the period.
            wait: wait until the period has finished (Succeeded or Failed).
            timeout: with `wait`, seconds to wait at most.

        Returns:
            The period: its ``id``, ``kind``, ``start``, ``end``, ``status``…; with `wait`,
            in detail (see :meth:`monitoring_period`).

        Raises:
            StateError: the monitoring is not Validated (the message says its status).
            ExecutionError: with `wait`, the period Failed.
        """
        payload: Dict[str, Any] = {}
        if date is not None:
            payload["date"] = date.isoformat() if hasattr(date, "isoformat") else date
        period = self._conn.post_json(self._monitoring_path + "/periods", payload, ("id",))
        logger.info(
            "Monitoring period %s (%s from %s) of model %s is %s",
            period["id"],
            period.get("kind"),
            period.get("start"),
            self.model_hash,
            period.get("status"),
        )
        if not wait:
            return period
        what = f"Monitoring period {period['id']} ({period.get('kind')} from {period.get('start')}) of model {self.model_hash}"

        def failure(info: Dict[str, Any]) -> ExecutionError:
            return failure_with_log(what, info.get("error_message"), lambda: info.get("log") or "", info)

        return wait_finished(
            lambda: self.monitoring_period(period["id"]), "status", what, failure, timeout, logger
        )

    def monitoring_periods(self) -> List[Dict[str, Any]]:
        """The monitoring's periods, newest first, each with its status, ``average_psi``,
        ``drift_status`` and its columns' PSI: ``pd.DataFrame(model.monitoring_periods())``."""
        return self._conn.get_json(self._monitoring_path + "/periods", ("periods",))["periods"]

    def monitoring_period(self, period_id: int) -> Dict[str, Any]:
        """One period in detail: its log, SHAP means, and every column's bins (``labels``),
        counts and proportions on both sides."""
        number = whole_number("period_id", period_id)
        return self._conn.get_json(f"{self._monitoring_path}/periods/{number}", ("status",))


class NeomarilModelVersion:
    """One version of a :class:`NeomarilModel`: its own files, requirements, Python,
    builds and status. The model's run URL serves its *live* version; every version can
    also be called on its own URL, whichever is live.

    Get one from :meth:`NeomarilModel.add_version`, :meth:`NeomarilModel.versions`,
    :meth:`NeomarilModel.get_version`, or ``run.promote_model(..., version_of=model)``.
    Calling it uses its model's group token (``predict(..., group_token=)``, else
    ``model.set_token()``, else ``NEOMARIL_GROUP_TOKEN``).

    Attributes:
        model: the :class:`NeomarilModel` it is a version of.
        model_hash: that model's hash (its executions are numbered per model).
        version: its number; 1 is the model's first upload.
        hash: the version's own hash (version 1's is the model's).
        operation: ``Sync`` or ``Async``, as its model.
    """

    def __init__(self, model: NeomarilModel, info: Dict[str, Any]) -> None:
        self.model = model
        self._conn = model._conn
        self._info: Dict[str, Any] = dict(info)
        self.model_hash: str = info.get("model") or model.model_hash
        self.version: int = int(info["version"])
        self.hash: str = info.get("hash", "")
        self.operation: str = info.get("operation") or model.operation

    def __repr__(self) -> str:
        return (
            f"<NeomarilModelVersion {self.version} of {self.model_hash} {self.status}"
            f"{' live' if self.live else ''} hash={self.hash}>"
        )

    @property
    def _path(self) -> str:
        return f"/models/{self.model_hash}/versions/{self.version}"

    @property
    def _what(self) -> str:
        return f"version {self.version} of {self.model._what}"

    @property
    def status(self) -> str:
        """Its status when last seen: Ready, Building, Deployed, Failed, Disabled or
        Deleted (:meth:`get_status` asks now)."""
        return self._info.get("status", "?")

    @property
    def live(self) -> bool:
        """Whether the model's run URL served it when last seen (:meth:`version_info` asks now)."""
        return bool(self._info.get("live"))

    @property
    def run_url(self) -> str:
        """The URL that calls this version (``POST`` with the group token)."""
        return self._info.get("run_url") or self._conn.absolute(
            f"/run/{self.model_hash}/versions/{self.version}"
        )

    def version_info(self) -> Dict[str, Any]:
        """Everything the server says about the version (``live``, files, schema,
        requirements, who uploaded it when, last build, URLs…), fetched now."""
        self._info = self._conn.get_json(self._path, ())
        return dict(self._info)

    def get_status(self) -> str:
        """The version's own status, now (``version_info()["status_message"]`` says why)."""
        answer = self._conn.get_json(self._path + "/status", ("status",))
        self._info.update(answer)
        return answer["status"]

    def get_logs(self, build: Optional[int] = None) -> str:
        """The version's build log, timestamped; the latest build by default."""
        params = {"build": build} if build is not None else None
        return self._conn.get_json(self._path + "/logs", ("log",), params=params)["log"]

    def wait_ready(self, timeout: float = 1800.0) -> NeomarilModelVersion:
        """Wait until the version is Deployed, polling as :meth:`NeomarilModel.wait_ready` does.

        Returns:
            The version itself (a new version is live once Deployed).

        Raises:
            BuildError: its build failed; the message has the reason and the end of its
                build log (the live version keeps serving).
            StateError: it was disabled or deleted.
            WaitTimeout: not Deployed after `timeout` seconds.
        """
        _wait_deployed(self.get_status, self._what, self._build_failure, "version.restart()", timeout)
        # The status answer has no `live`: read the version again, or a new version that
        # went live when Deployed would still say live=False.
        self.version_info()
        return self

    def _build_failure(self) -> BuildError:
        return _failed_build(self._what, self._info, self.get_logs)

    def predict(
        self, data: Any, group_token: Optional[str] = None, *, timeout: Optional[float] = None
    ) -> Any:
        """Call this version, whichever is live: as :meth:`NeomarilModel.predict` (Sync: the
        answer; Async: a :class:`~neomaril_codex.base.NeomarilExecution`)."""
        path = f"/run/{self.model_hash}/versions/{self.version}"
        return self.model._call(path, self.operation, data, group_token, timeout)

    # Lifecycle ---------------------------------------------------------------------------

    def make_live(self) -> NeomarilModelVersion:
        """Make this (Deployed) version the one the model's run URL serves (see
        :meth:`NeomarilModel.set_live`)."""
        return self.model.set_live(self)

    def _act(self, action: str) -> str:
        answer = self._conn.post_json(f"{self._path}/{action}", fields=("status",))
        self._info.update(answer)
        return answer["status"]

    def disable(self) -> str:
        """Stop serving this version (its URL answers 409 until restarted). Returns the new status."""
        status = self._act("disable")
        logger.info("Version %s of model %s disabled", self.version, self.model_hash)
        return status

    def restart(self, wait_for_ready: bool = False) -> str:
        """Build this version again and serve it; a rebuild never changes which version is live.

        Returns the status (``Ready``, or ``Deployed`` with `wait_for_ready`).
        """
        status = self._act("restart")
        logger.info("Version %s of model %s restarted: a new build is queued", self.version, self.model_hash)
        if wait_for_ready:
            self.wait_ready()
            return "Deployed"
        return status

    def delete(self) -> None:
        """Delete this version: its files and environment link are removed.

        Raises:
            StateError: it is the live version (make another one live first), or version 1,
                which holds the model (``model.delete()`` deletes every version).
        """
        answer = json_of(self._conn.request("DELETE", self._path), ())
        self._info.update(answer)
        logger.info("Version %s of model %s deleted", self.version, self.model_hash)


def _sync_body(data: Any) -> bytes:
    """The request body of a Sync call: JSON text."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, os.PathLike) or (
        isinstance(data, str) and not data.lstrip().startswith(("{", "[", '"')) and "\n" not in data
    ):
        problems: List[str] = []
        path = existing_file("data", data, problems)
        if path is None:
            raise InputError(f"{problems[0]} (a Sync model takes a dict, a JSON string or a JSON file)")
        return path.read_bytes()
    if isinstance(data, str):
        return data.encode("utf-8")
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        rows = data.to_dict(orient="records")
        if len(rows) != 1:
            raise InputError(
                f"A Sync model takes one input; this DataFrame has {len(rows)} rows. "
                "Call it once per row, or use an Async model for batches."
            )
        data = rows[0]
    elif hasattr(data, "to_dict"):  # a pandas Series
        data = data.to_dict()
    try:
        return dumps(data).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InputError(f"data: could not be turned into JSON: {exc}") from None


class NeomarilModelClient(BaseNeomarilClient):
    """Deploy, find and manage models (and groups: see :class:`~neomaril_codex.base.BaseNeomarilClient`).

    Args are those of :class:`~neomaril_codex.base.BaseNeomarilClient`: with no
    arguments the connection comes from ``NEOMARIL_URL`` and ``NEOMARIL_USER`` +
    ``NEOMARIL_PASSWORD`` (or ``NEOMARIL_TOKEN``), from the environment or a ``.env``.
    """

    def create_model(
        self,
        model_name: str,
        model_reference: str,
        source_file: PathLike,
        model_file: PathLike,
        requirements_file: PathLike,
        schema: Union[PathLike, Dict[str, Any], None] = None,
        group: Optional[str] = None,
        extra_files: Optional[Sequence[PathLike]] = None,
        env: Optional[PathLike] = None,
        python_version: str = "3.10",
        operation: str = "Sync",
        input_type: Optional[str] = None,
        wait_for_ready: bool = True,
        *,
        sample_file: Optional[PathLike] = None,
    ) -> NeomarilModel:
        """Upload a trained model and deploy it.

        Args:
            model_name: a name for people (up to 64 characters).
            model_reference: the name of the entrypoint function in `source_file`, e.g. ``'score'``.
            source_file: the scoring script (``.py``).
            model_file: the model file, e.g. ``model.pkl``.
            requirements_file: ``requirements.txt`` (may be empty).
            schema: one example input, as a JSON file path or a dict. Required for Sync models.
                For an Async model, a file that is not ``.json`` (``schema.csv``, as the
                original product's examples give it) is its sample input (`sample_file`).
            group: the group that will own it (default: ``NEOMARIL_GROUP``).
            extra_files: more files, put beside the source (e.g. ``utils.py``).
            env: a ``.env`` file of secrets; the server stores it encrypted and never shows it back.
            python_version: the Python the model runs on, e.g. ``'3.9'``.
            operation: ``'Sync'`` (JSON in, JSON out) or ``'Async'`` (a file in, a file out).
            input_type: ``json`` for Sync; ``csv`` (default), ``parquet`` or ``json`` for Async.
            wait_for_ready: wait until the build has finished (see :meth:`NeomarilModel.wait_ready`).
            sample_file: Async only: a sample input, used to smoke-test the model.

        Returns:
            The new :class:`NeomarilModel` (Deployed when `wait_for_ready`).

        Raises:
            InputError: a file is missing, or the server refused the upload (every
                problem is in the message and in ``error.errors``).
            BuildError: with `wait_for_ready`, the build failed (the message ends
                with the build log).
        """
        op = OPERATIONS.get(str(operation).lower())
        if op is None:
            raise InputError(f"operation must be 'Sync' or 'Async', got {operation!r}.")
        group = group or _env("NEOMARIL_GROUP")
        if not group:
            raise InputError(
                "No group: pass group='…' (create one with client.create_group) or set NEOMARIL_GROUP."
            )
        fields = [
            ("name", model_name),
            ("group", group),
            ("operation", op),
            ("model_reference", model_reference),
            ("python_version", str(python_version)),
        ]
        if input_type:
            fields.append(("input_type", input_type))
        if op == "Async" and sample_file is None and _is_a_sample_input(schema):
            # The original's Async examples pass their sample input as the schema
            # (schema=PATH+'schema.csv', input_type='csv'): it is what the build runs.
            sample_file, schema = schema, None
        parts = _model_parts(
            fields,
            source_file=source_file,
            model_file=model_file,
            requirements_file=requirements_file,
            schema=schema,
            env=env,
            sample_file=sample_file,
            extra_files=extra_files,
            required=("source_file", "model_file", "requirements_file"),
        )
        response = self._conn.upload(
            "/models", fields=parts.fields, files=parts.files, label=f"Uploading model '{model_name}'"
        )
        model = NeomarilModel(self._conn, json_of(response, ("hash",)))
        logger.info(
            "Model '%s' created in group '%s' with hash %s; it is being built.",
            model.name,
            model.group,
            model.model_hash,
        )
        if wait_for_ready:
            model.wait_ready()
        return model

    def get_model(
        self,
        model_hash: Optional[str] = None,
        group: Optional[str] = None,
        *,
        model_id: Optional[str] = None,
        group_token: Optional[str] = None,
        wait_for_ready: bool = False,
    ) -> NeomarilModel:
        """The model with this hash (checked to belong to `group` when given).

        Args:
            model_hash: the model's hash; ``model_id=`` is the same, as the original
                product's English guide writes ``get_model(group=…, model_id=…)``.
            group: the group it must belong to.
            group_token: the token its calls use (as :meth:`NeomarilModel.set_token`).
            wait_for_ready: wait until it is Deployed (see :meth:`NeomarilModel.wait_ready`).
        """
        if model_hash is not None and model_id is not None and model_hash != model_id:
            raise InputError(
                f"model_hash={model_hash!r} and model_id={model_id!r} name two models: give one."
            )
        model_hash = model_hash if model_hash is not None else model_id
        if not model_hash:
            raise InputError("Which model? Pass its hash: get_model('M…') or get_model(model_id='M…').")
        info = self._conn.get_json(f"/models/{model_hash}", ("hash",))
        if group is not None and info.get("group") != group:
            raise NotFoundError(f"Model {model_hash} is not in group '{group}'.", status_code=404)
        model = NeomarilModel(self._conn, info, group_token=group_token)
        if wait_for_ready:
            model.wait_ready()
        return model

    def search_models(
        self,
        name: Optional[str] = None,
        state: Optional[str] = None,
        group: Optional[str] = None,
        only_deployed: bool = False,
    ) -> List[Dict[str, Any]]:
        """Models you can see, newest first, as dicts (``hash``, ``name``, ``group``,
        ``operation``, ``status``…): ``pd.DataFrame(client.search_models())`` tabulates them.

        Args:
            name: part of the name (case-insensitive).
            state: only models in this status (Ready, Building, Deployed, Failed, Disabled, Deleted).
            group: only this group's models.
            only_deployed: only Deployed models (the same as ``state='Deployed'``).
        """
        if only_deployed:
            if state not in (None, "Deployed"):
                raise InputError(f"only_deployed=True contradicts state={state!r}.")
            state = "Deployed"
        params = {key: value for key, value in (("name", name), ("status", state), ("group", group)) if value}
        return list(self._conn.paginate("/models", params))

    def get_logs(self, model_hash: str, build: Optional[int] = None) -> str:
        """A model's build log (the latest build, or build number `build`)."""
        return NeomarilModel(self._conn, {"hash": model_hash}).get_logs(build)

    def get_model_execution(
        self, *, model_id: str, exec_id: Union[int, str], group: Optional[str] = None
    ) -> NeomarilExecution:
        """An execution of a model, by the model's hash and the execution's number, as the
        original product's client names it: ``client.get_model_execution(model_id='M…',
        exec_id='1')``. With `group`, the model is checked to belong to it (as
        :meth:`get_model`)."""
        return self.get_model(model_id, group).get_model_execution(exec_id)
