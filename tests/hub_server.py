"""A local stand-in for the Hugging Face Hub, for tests that push and download without the internet.

It speaks the part of the Hub HTTP API that `huggingface_hub` uses on its LFS path (`HF_HUB_DISABLE_XET=1`):

- create a model repo or a Space (`/api/repos/create`; a Space needs an `sdk`), a branch, validate a card's YAML,
  `whoami-v2`;
- upload: `preupload` (LFS or regular, remote oid), the git-LFS batch API with the `basic` transfer (a PUT per
  object, then `verify`), and the ndjson `commit`;
- download: `resolve` (HEAD and GET, with `ETag`, `X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`,
  `Content-Length`, ranges), model info per revision, the tree listing and refs.

Errors carry the `X-Error-Code` headers the client turns into `RepositoryNotFoundError`, `EntryNotFoundError`, ...
Tests inject failures with `fail(...)` and read what happened in `requests` and `lfs_uploads`. Spaces live under
`/api/spaces/...`, `/spaces/<id>/resolve/...`, and in `repos` (and `files(...)`) under the key `spaces/<id>`.

>>> with HubServer(token="hf_test") as hub:  # doctest: +SKIP
...     os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

#: Files the real Hub's default `.gitattributes` stores with LFS; anything binary or over 10 MB is LFS too.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.png", "*.jpg", "*.jpeg", "*.pkl", "*.npy")
LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()
USER = "user"
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class RepoEntry:
    """One file of one commit: regular content, or a pointer to an LFS object."""

    size: int
    sha256: str
    lfs: bool
    content: bytes = b""  # regular files only; LFS bytes live in `HubServer.objects`

    @property
    def blob_oid(self) -> str:
        return git_blob_oid(lfs_pointer(self.sha256, self.size) if self.lfs else self.content)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_oid


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, RepoEntry]


@dataclass
class Repo:
    repo_id: str
    private: bool
    repo_type: str = "model"
    sdk: str | None = None  # Spaces only: gradio, streamlit, docker or static
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    )

    @property
    def key(self) -> str:
        """Where the repo lives in URLs and in `HubServer.repos`: `user/name` or `spaces/user/name`."""
        return repo_key(self.repo_type, self.repo_id)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


def repo_key(repo_type: str, repo_id: str) -> str:
    return repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"


@dataclass
class Failure:
    method: str
    pattern: str
    status: int
    times: int


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **body):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.body = status, message, code, headers or {}, body


class HubServer:
    """The Hub's state (repos, commits, LFS objects) behind a threaded HTTP server on 127.0.0.1.

    Args:
        token: If set, writes need `Authorization: Bearer <token>`, and so do reads of private repos.
    """

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.lfs_uploads: list[str] = []
        self.failures: list[Failure] = []
        self.lock = threading.RLock()
        self._commit_counter = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ----- what tests use -----

    def fail(self, method: str, pattern: str, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests whose `METHOD path` matches `pattern` (a regex) with `status`."""
        with self.lock:
            self.failures.append(Failure(method.upper(), pattern, status, times))

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The content of every file of `repo_id` (`spaces/user/name` for a Space) at `revision`, LFS resolved."""
        with self.lock:
            commit = self.repos[repo_id].resolve(revision)
            return {path: self._content(entry) for path, entry in commit.files.items()}

    def commit_messages(self, repo_id: str) -> list[str]:
        with self.lock:
            return [commit.message for commit in self.repos[repo_id].commits.values()]

    def count(self, method: str, pattern: str) -> int:
        """How many requests matched `METHOD` and the regex `pattern`, whatever their answer."""
        return sum(1 for m, path, _ in self.requests if m == method and re.search(pattern, path))

    # ----- state changes -----

    def _content(self, entry: RepoEntry) -> bytes:
        return self.objects[entry.sha256] if entry.lfs else entry.content

    def _new_commit(self, repo: Repo, parent: Commit | None, message: str, files: dict[str, RepoEntry]) -> Commit:
        self._commit_counter += 1
        seed = f"{repo.key}\n{parent.oid if parent else ''}\n{message}\n{self._commit_counter}"
        commit = Commit(oid=hashlib.sha1(seed.encode()).hexdigest(), message=message, files=files)
        repo.commits[commit.oid] = commit
        return commit

    def create_repo(
        self, repo_id: str, private: bool = False, repo_type: str = "model", sdk: str | None = None
    ) -> Repo:
        with self.lock:
            repo = Repo(repo_id=repo_id, private=private, repo_type=repo_type, sdk=sdk)
            self.repos[repo.key] = repo
            entry = RepoEntry(len(GITATTRIBUTES), hashlib.sha256(GITATTRIBUTES).hexdigest(), False, GITATTRIBUTES)
            repo.branches["main"] = self._new_commit(repo, None, "initial commit", {".gitattributes": entry}).oid
            return repo


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    name = PurePosixPath(path).name
    return any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS) or size > LFS_THRESHOLD or b"\0" in sample


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        server_state = hub

    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's client expects
    server_state: HubServer

    def log_message(self, format: str, *args) -> None:  # silence the default per-request stderr line
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # ----- plumbing -----

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server_state.requests.append((self.command, urlsplit(self.path).path, status))

    def _dispatch(self, method: str) -> None:
        hub = self.server_state
        body = self._read_body() if method in ("POST", "PUT") else b""
        url = urlsplit(self.path)
        with hub.lock:
            for failure in hub.failures:
                if failure.times > 0 and failure.method == method and re.search(failure.pattern, url.path):
                    failure.times -= 1
                    message = f"Injected failure {failure.status}"
                    return self._send(failure.status, {"error": message}, {"X-Error-Message": message})
        try:
            with hub.lock:
                status, payload, headers = self._route(method, url.path, parse_qs(url.query), body)
        except HubError as error:
            headers = {"X-Error-Message": error.message, **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            return self._send(error.status, {"error": error.message, **error.body}, headers)
        self._send(status, payload, headers)

    def _authorized(self) -> bool:
        token = self.server_state.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _require_write(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> Repo:
        repo = self.server_state.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ----- routes -----

    def _route(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, bytes | dict | list, dict]:
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body))
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(body))
        if method == "GET" and parts == ["api", "whoami-v2"]:
            if self.server_state.token is None or not self._authorized():
                raise HubError(401, "Invalid credentials in Authorization header")
            return 200, {"type": "user", "name": USER, "auth": {"accessToken": {"role": "write"}}}, {}
        if method == "PUT" and parts[:2] == ["__lfs", "upload"]:
            return self._lfs_put(parts[2], body)
        if method == "POST" and parts == ["__lfs", "verify"]:
            payload = json.loads(body)
            if payload["oid"] not in self.server_state.objects:
                raise HubError(404, "Object not uploaded")
            return 200, {"success": True}, {}
        if parts[:2] in (["api", "models"], ["api", "spaces"]) and len(parts) >= 4:
            key = repo_key(parts[1][:-1], f"{parts[2]}/{parts[3]}")
            return self._api_repo(method, key, parts[4:], query, body)
        space = 1 if parts[:1] == ["spaces"] else 0  # a Space's URLs are a model's with `spaces/` in front
        key, rest = "/".join(parts[: 2 + space]), parts[2 + space :]
        if method == "POST" and len(rest) == 4 and key.endswith(".git") and rest == LFS_BATCH:
            return self._lfs_batch(key[: -len(".git")], json.loads(body))
        if method in ("GET", "HEAD") and len(rest) >= 3 and rest[0] == "resolve":
            return self._resolve(key, rest[1], "/".join(rest[2:]))
        raise HubError(404, f"No route for {method} {path}")

    def _create_repo(self, payload: dict) -> tuple[int, dict, dict]:
        self._require_write()
        repo_type = payload.get("type", "model")
        if repo_type not in ("model", "space"):
            raise HubError(400, "This test server hosts model repos and Spaces only")
        sdk = payload.get("sdk")
        if repo_type == "space" and sdk not in SPACE_SDKS:
            raise HubError(400, f"A Space needs an sdk, one of {', '.join(SPACE_SDKS)}")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.server_state.url}/{repo_key(repo_type, repo_id)}"
        if repo_key(repo_type, repo_id) in self.server_state.repos:
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        self.server_state.create_repo(repo_id, payload.get("visibility") == "private", repo_type, sdk)
        return 200, {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}, {}

    def _validate_yaml(self, payload: dict) -> tuple[int, dict, dict]:
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", payload["content"], re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            return 400, {"errors": [{"message": str(error)}], "warnings": []}, {}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _api_repo(self, method: str, key: str, rest: list[str], query: dict, body: bytes):
        repo = self._repo(key)
        action = rest[0] if rest else "revision"
        if method == "GET" and action == "revision":
            return 200, self._model_info(repo, rest[1] if len(rest) > 1 else "main", "blobs" in query), {}
        if method == "GET" and action == "tree":
            recursive = query.get("recursive", ["False"])[0].lower() == "true"
            return 200, self._tree(repo, rest[1], "/".join(rest[2:]), recursive), {}
        if method == "GET" and action == "refs":
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid} for name, oid in repo.branches.items()
            ]
            return 200, {"branches": branches, "tags": [], "converts": []}, {}
        if method == "POST" and action == "preupload":
            self._require_write()
            return 200, self._preupload(repo, rest[1], json.loads(body)), {}
        if method == "POST" and action == "commit":
            self._require_write()
            return 200, self._commit_ndjson(repo, rest[1], body), {}
        if method == "POST" and action == "branch":
            self._require_write()
            if rest[1] in repo.branches:
                raise HubError(409, f"Reference {rest[1]} already exists")
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            repo.branches[rest[1]] = self._commit(repo, start).oid
            return 200, {}, {}
        raise HubError(404, f"No route for {method} /api/{repo.repo_type}s/{repo.repo_id}/{'/'.join(rest)}")

    def _model_info(self, repo: Repo, revision: str, blobs: bool) -> dict:
        commit = self._commit(repo, revision)
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_oid)
                if entry.lfs:
                    sibling["lfs"] = {
                        "sha256": entry.sha256,
                        "size": entry.size,
                        "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
                    }
            siblings.append(sibling)
        card = commit.files.get("README.md")
        match = card and re.match(r"^---\s*\n(.*?)\n---", card.content.decode(), re.DOTALL)
        return {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": repo.created,
            "lastModified": repo.created,
            "siblings": siblings,
            "cardData": yaml.safe_load(match.group(1)) if match else None,
            **({"sdk": repo.sdk} if repo.repo_type == "space" else {}),
        }

    def _tree(self, repo: Repo, revision: str, folder: str, recursive: bool) -> list[dict]:
        commit = self._commit(repo, revision)
        prefix = f"{folder}/" if folder else ""
        entries, folders = [], set()
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            relative = path[len(prefix) :]
            if not recursive and "/" in relative:
                folders.add(prefix + relative.split("/")[0])
                continue
            item = {"type": "file", "oid": entry.blob_oid, "size": entry.size, "path": path}
            if entry.lfs:
                pointer = lfs_pointer(entry.sha256, entry.size)
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(pointer)}
            entries.append(item)
        if folder and not entries and not folders:
            raise HubError(404, f"{folder} does not exist on {revision}", "EntryNotFound")
        return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)] + entries

    def _preupload(self, repo: Repo, revision: str, payload: dict) -> dict:
        commit = self._commit(repo, revision)
        files = []
        for item in payload["files"]:
            lfs = _is_lfs(item["path"], item["size"], base64.b64decode(item["sample"]))
            info = {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            remote = commit.files.get(item["path"])
            if remote is not None:
                info["oid"] = remote.sha256 if remote.lfs else remote.blob_oid
            files.append(info)
        return {"files": files, "commitOid": commit.oid}

    def _lfs_batch(self, repo_id: str, payload: dict) -> tuple[int, dict, dict]:
        self._repo(repo_id)
        self._require_write()
        objects = []
        for obj in payload["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server_state.objects:  # already stored objects get no actions: no re-upload
                base = self.server_state.url
                answer["actions"] = {
                    "upload": {"href": f"{base}/__lfs/upload/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{base}/__lfs/verify", "header": {}},
                }
            objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}

    def _lfs_put(self, oid: str, body: bytes) -> tuple[int, bytes, dict]:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "Uploaded content does not match its oid")
        self.server_state.objects[oid] = body
        self.server_state.lfs_uploads.append(oid)
        return 200, b"", {"ETag": f'"{oid[:32]}"'}

    def _commit_ndjson(self, repo: Repo, revision: str, body: bytes) -> dict:
        parent = self._commit(repo, revision)
        if revision not in repo.branches:
            raise HubError(400, "Can only commit to a branch")
        files = dict(parent.files)
        message = "commit"
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
            elif key == "file":
                content = base64.b64decode(value["content"])
                files[value["path"]] = RepoEntry(len(content), hashlib.sha256(content).hexdigest(), False, content)
            elif key == "lfsFile":
                if value["oid"] not in self.server_state.objects:
                    raise HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                size = len(self.server_state.objects[value["oid"]])
                files[value["path"]] = RepoEntry(size, value["oid"], True)
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: entry for path, entry in files.items() if not path.startswith(prefix)}
        commit = self.server_state._new_commit(repo, parent, message, files)
        repo.branches[revision] = commit.oid
        url = f"{self.server_state.url}/{repo.key}/commit/{commit.oid}"
        return {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None}

    def _resolve(self, repo_id: str, revision: str, path: str) -> tuple[int, bytes, dict]:
        repo = self._repo(repo_id)
        commit = self._commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"{path} does not exist", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        content = self.server_state._content(entry)
        headers = {"ETag": f'"{entry.etag}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": entry.size})
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start, end = int(match.group(1)), int(match.group(2) or len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            return 206, content[start : end + 1], headers
        return 200, content, headers


LFS_BATCH = ["info", "lfs", "objects", "batch"]
