"""Where an experiment's files are: a local folder, or a prefix in object storage (`s3://`,
`gs://`, any URI `pyarrow.fs.FileSystem.from_uri` understands), behind the few file operations
Arbiter itself needs. Ray Tune reads and writes the same place through the same filesystems.

Credentials and endpoints come from the variables pyarrow reads (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`,
`GOOGLE_APPLICATION_CREDENTIALS`), never from the URI, so a URI is safe to print and to record.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from arbiter.errors import UserError

# Arbiter's own reads and checks answer within seconds when the store does not; a sweep's
# uploads and restores (Tune's and the trials', through `patient`) ride out a store that is
# away for a few minutes: 13 retries with exponential back-off span ~205 s when every attempt
# is refused at once (12 span ~100 s), more when connections time out.
QUICK = {"connect_timeout": 3.0, "request_timeout": 10.0, "retries": 1}
PATIENT = {"connect_timeout": 5.0, "request_timeout": 60.0, "retries": 13}
EXAMPLES = "a local folder, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"


@dataclass(frozen=True)
class Location:
    """A folder: `path` on the filesystem `fs`; `scheme` ("s3://", "gs://", "" when local)
    makes its URI, the name users see, Tune is given and the record keeps."""

    fs: pafs.FileSystem
    path: str
    scheme: str = ""

    @classmethod
    def of(cls, where: str | Path, flag: str = "--storage") -> Location:
        """A local path (`~` expanded) or a URI; `flag` names the option in error messages."""
        text = str(where)
        if "://" not in text:
            return cls(pafs.LocalFileSystem(), str(Path(os.path.expanduser(text)).resolve()))
        parts = urlsplit(text)
        if parts.username or parts.password:
            raise UserError(
                f"{flag} {parts.scheme}://…@{parts.hostname}{parts.path}: credentials do not "
                "belong in the URI (it is printed and recorded); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or GOOGLE_APPLICATION_CREDENTIALS"
            )
        if parts.scheme == "file":
            return cls.of(parts.path, flag)
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise UserError(f"{flag} {text}: not a storage URI ({exc}); give {EXAMPLES}") from None
        if not parts.netloc:
            raise UserError(f"{flag} {text}: names no bucket; give {EXAMPLES}")
        return cls(_tuned(fs, QUICK), path.rstrip("/"), f"{parts.scheme}://")

    @property
    def uri(self) -> str:
        return self.scheme + self.path

    @property
    def remote(self) -> bool:
        return bool(self.scheme)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> Location:
        return replace(self, path=posixpath.dirname(self.path))

    @property
    def local(self) -> Path:
        """The folder as a local path (only for a local location)."""
        assert not self.remote, self.uri
        return Path(self.path)

    def __truediv__(self, name: str) -> Location:
        return replace(self, path=posixpath.join(self.path, name))

    def __str__(self) -> str:
        return self.uri

    def patient(self) -> Location:
        """The same place through a filesystem that retries for longer (a sweep's uploads)."""
        return replace(self, fs=_tuned(self.fs, PATIENT)) if self.remote else self

    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def children(self) -> list[str]:
        """The names in this folder (none when it does not exist)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted(posixpath.basename(i.path) for i in self.fs.get_file_info(selector))

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read().decode()

    def write_text(self, text: str) -> None:
        """Write the whole file, so that a reader sees the old text or the new, never part:
        an object store's put is whole; a local file is written aside and renamed."""
        self.parent.make_dir()
        target = self if self.remote else self.parent / f".{self.name}.{uuid.uuid4().hex}"
        with self.fs.open_output_stream(target.path) as stream:
            stream.write(text.encode())
        if target is not self:
            self.fs.move(target.path, self.path)

    def make_dir(self) -> None:
        """Create the folder; an object store has none to create (a key's prefix is one)."""
        if not self.remote:
            self.fs.create_dir(self.path, recursive=True)

    def delete(self) -> None:
        """Remove the file if it is there."""
        with suppress(FileNotFoundError):
            self.fs.delete_file(self.path)


def _tuned(fs: pafs.FileSystem, settings: dict[str, float]) -> pafs.FileSystem:
    """An S3 filesystem as `from_uri` made it (from the URI and the AWS variables), with
    `settings`' timeouts and retries; other filesystems as they are."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    options = fs.__reduce__()[1][0]  # pyarrow pickles an S3FileSystem as its options
    return RetryingS3FileSystem(options, settings)


class RetryingS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem with `settings`' timeouts and retries, also after pickling.

    pyarrow pickles an S3FileSystem without its retry strategy, so the copy Tune sends to every
    trial would fall back to pyarrow's default of 3 quick attempts: a store away for a few
    seconds would fail the trials. AWS's "default" strategy (exponential back-off, no retry
    quota) is used rather than "standard", whose quota stops retrying after ~100 failures in
    a process, which one outage's uploads reach."""

    def __init__(self, options: dict, settings: dict[str, float]) -> None:
        super().__init__(
            **{
                **options,
                "connect_timeout": settings["connect_timeout"],
                "request_timeout": settings["request_timeout"],
                "retry_strategy": pafs.AwsDefaultS3RetryStrategy(int(settings["retries"])),
            }
        )
        self._options, self._settings = options, settings

    def __reduce__(self):
        return RetryingS3FileSystem, (self._options, self._settings)


@contextmanager
def reaching(location: Location, flag: str = "--storage") -> Iterator[None]:
    """Turn a failure to reach or use `location`'s store into one line naming it."""
    try:
        yield
    except OSError as exc:
        if not location.remote:
            raise
        raise UserError(f"{flag} {location.uri}: {describe(exc)}") from None


def describe(exc: OSError) -> str:
    """What went wrong with an object store, in words a user can act on."""
    text = str(exc)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if "NETWORK_CONNECTION" in text or "Could not resolve" in text:
        where = f"the endpoint {endpoint}" if endpoint else "the storage service"
        return f"cannot reach {where} (AWS_ENDPOINT_URL): is it up and the address right?"
    if any(k in text for k in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "INVALID_ACCESS")):
        return "the credentials were refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
        return "the bucket does not exist; create it first"
    denied = any(k in text for k in ("ACCESS_DENIED", "AccessDenied", "403"))
    if "AWS Error" in text and not _aws_credentials_configured() and (denied or "UNKNOWN" in text):
        return (
            "refused, and no AWS credentials are set: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    if denied:
        return "access denied: these credentials may not use it"
    return text.splitlines()[0] if text else type(exc).__name__


# Where the AWS SDK finds credentials besides an instance role, which cannot be seen from here.
_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def _aws_credentials_configured() -> bool:
    """Whether credentials are set for the AWS SDK in the environment or its files; False
    also on a machine with an instance role, where a failure still names the missing keys."""
    if any(os.environ.get(v) for v in _CREDENTIAL_VARIABLES):
        return True
    files = (
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
    )
    return any(Path(f).expanduser().is_file() for f in files)
