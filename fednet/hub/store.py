"""The local adapter hub: content-addressed blobs plus signed manifests in SQL.

Layout under ``root``::

    blobs/sha256/<first two hex>/<full hex>   file contents, immutable
    hub.db                                    default SQLite metadata

Publishing writes every blob atomically first and only then inserts the
manifest row in one transaction, so a crash leaves at most unreferenced blobs,
never a visible half adapter. Reads re-check the signature and every sha256.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import tenacity
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy import exc as sa_exc

from fednet.errors import IntegrityError, NotFoundError, SignatureError, UntrustedKeyError
from fednet.hub.bundle import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    check_artifact_fits,
    check_files,
    check_required_files,
    locked_dir,
    prepare_publish,
    sha256_hex,
    write_atomic,
    write_files_atomically,
)
from fednet.hub.db import adapters_table, make_engine, name_keys_table, owner_keys_table
from fednet.hub.keys import (
    Ed25519PrivateKey,
    TrustedKeys,
    check_trusted_key,
    normalize_public_key,
    verify_manifest,
)
from fednet.hub.manifest import Manifest, VersionSpec, check_name, parse_version, utc_now_iso
from fednet.hub.peers import PeerInfo, PeerRegistry, SignedPeerRequest, sign_peer_request
from fednet.hub.tokens import TokenRegistry
from fednet.hub.trust import TrustStore, fingerprint, verify_rotation

__all__ = ["HubStore"]

logger = logging.getLogger(__name__)

_INSERT_RETRIES = 5


class _WriteLock:
    """Serialises the store's database writes across threads and processes.

    SQLite refuses (``database is locked``) a transaction that read before
    another process wrote; taking turns on the hub directory avoids that.
    """

    def __init__(self, root: Path) -> None:
        self._thread = threading.Lock()
        self._root = root
        self._held: contextlib.AbstractContextManager[Path] | None = None

    def __enter__(self) -> _WriteLock:
        self._thread.acquire()
        try:
            self._held = locked_dir(self._root)
            self._held.__enter__()
        except BaseException:
            self._thread.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        held, self._held = self._held, None
        try:
            if held is not None:
                held.__exit__(None, None, None)
        finally:
            self._thread.release()


class HubStore:
    """A versioned, integrity-checked, signed adapter store on local disk.

    Parameters
    ----------
    root : str or Path
        Directory holding ``blobs/`` and, by default, ``hub.db``.
    db_url : str, optional
        SQLAlchemy URL of the metadata database; default
        ``sqlite:///<root>/hub.db``.
    trusted_keys : mapping, optional
        Owner id to the public keys allowed to publish for it. Without it the
        store pins on first use: an owner's first publish pins its key.
        Either way, the first publish of a name binds the name to its owner
        and key; a later version must be signed by that key or carry a
        rotation signed by it (``Manifest.rotation``), else
        ``UntrustedKeyError``.
    trust : TrustStore, optional
        The reader's trust store: when given, :meth:`fetch` and
        :meth:`read_file` also refuse manifests whose key it does not trust
        (see :func:`~fednet.hub.open_hub`, which always gives one).
    peer_timeout : float
        Seconds after the last heartbeat within which a peer counts as up.
    clock : callable
        Returns Unix time; injectable for tests.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        db_url: str | None = None,
        trusted_keys: TrustedKeys | None = None,
        peer_timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
        trust: TrustStore | None = None,
    ) -> None:
        if trust is not None and not isinstance(trust, TrustStore):
            raise TypeError(f"`trust` must be a TrustStore, got {type(trust).__name__}")
        self.trust = trust
        self.root = Path(root)
        self.blob_root = self.root / "blobs" / "sha256"
        self.blob_root.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{(self.root / 'hub.db').resolve()}"
        self.trusted_keys = (
            None
            if trusted_keys is None
            else {owner: frozenset(keys) for owner, keys in trusted_keys.items()}
        )
        with locked_dir(self.root):  # another process may be creating the same tables
            self._engine = make_engine(self.db_url)
        self._write_lock = _WriteLock(self.root)
        self._clock = clock
        self._peers = PeerRegistry(
            self._engine,
            timeout=peer_timeout,
            clock=clock,
            lock=self._write_lock,  # type: ignore[arg-type]
        )
        self.tokens = TokenRegistry(self._engine)
        """Bearer tokens of the HTTP service, stored as sha256 only."""

    def __repr__(self) -> str:
        return f"HubStore(root={str(self.root)!r}, db_url={self.db_url!r})"

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release database connections."""
        self._engine.dispose()

    @property
    def peer_timeout(self) -> float:
        """Default seconds since the last heartbeat for a peer to count as up."""
        return self._peers.timeout

    def blob_path(self, digest: str) -> Path:
        """Path of the blob holding contents with sha256 ``digest``."""
        return self.blob_root / digest[:2] / digest

    # -- publishing --------------------------------------------------------------

    def publish(self, adapter_dir: str | Path, draft: Manifest, key: Ed25519PrivateKey) -> Manifest:
        """Hash, sign and publish an adapter directory.

        Parameters
        ----------
        adapter_dir : str or Path
            PEFT adapter directory.
        draft : Manifest
            Descriptive fields; files, key, signature and version are filled in.
        key : Ed25519PrivateKey
            The owner's signing key.

        Returns
        -------
        Manifest
            The stored manifest, with its assigned ``version``.
        """
        manifest, files = prepare_publish(adapter_dir, draft, key)
        return self.publish_signed(manifest, files)

    def publish_signed(self, manifest: Manifest, files: Mapping[str, bytes]) -> Manifest:
        """Verify and store a signed manifest and its files as the next version.

        Raises
        ------
        SignatureError
            If the manifest is unsigned or its signature does not verify.
        UntrustedKeyError
            If the key is not trusted for the owner (pinned or configured).
        IntegrityError
            Naming each file whose sha256 does not match, or that is missing
            or not listed.
        ValueError
            If a PEFT file is missing from the manifest, or the adapter's tensors
            do not fit its base model or its ``adapter_config.json`` rank.
        """
        if not isinstance(manifest, Manifest):
            raise TypeError(f"`manifest` must be a Manifest, got {type(manifest).__name__}")
        verify_manifest(manifest)
        self._check_trust(manifest)
        check_required_files(manifest)
        check_files(manifest, files)
        check_artifact_fits(manifest, files, where=manifest.ref)
        self._check_rank(manifest, files)
        for name, digest in manifest.files.items():
            self._write_blob(digest, bytes(files[name]))
        with self._write_lock:
            for attempt in tenacity.Retrying(  # another writer took the version: again
                stop=tenacity.stop_after_attempt(_INSERT_RETRIES),
                retry=tenacity.retry_if_exception_type(sa_exc.IntegrityError),
                before_sleep=lambda _: logger.debug("version race on %s, retrying", manifest.name),
                reraise=True,
            ):
                with attempt, self._engine.begin() as conn:
                    stored = self._insert_manifest(conn, manifest)
        logger.info("published %s (owner %s, %d files)", stored.ref, stored.owner, len(files))
        return stored

    @staticmethod
    def _check_rank(manifest: Manifest, files: Mapping[str, bytes]) -> None:
        import json

        r = json.loads(files[ADAPTER_CONFIG]).get("r")
        if r != manifest.rank:
            raise ValueError(
                f"adapter {manifest.ref}: the manifest says rank {manifest.rank} but "
                f"{ADAPTER_CONFIG} has r={r}"
            )

    def _write_blob(self, digest: str, data: bytes) -> None:
        path = self.blob_path(digest)
        if path.exists():
            if sha256_hex(path.read_bytes()) == digest:
                return
            logger.warning("blob %s is corrupt; rewriting it from the upload", path)
        write_atomic(path, data)
        try:
            fd = os.open(path.parent, os.O_RDONLY)
        except OSError:  # directories cannot be opened on some platforms
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _insert_manifest(self, conn: Connection, manifest: Manifest) -> Manifest:
        key = normalize_public_key(manifest.owner_public_key)
        if self.trusted_keys is None:
            pinned = conn.execute(
                select(owner_keys_table.c.public_key).where(
                    owner_keys_table.c.owner == manifest.owner
                )
            ).scalar_one_or_none()
            if pinned is None:
                conn.execute(
                    insert(owner_keys_table).values(
                        owner=manifest.owner, public_key=key, registered=utc_now_iso()
                    )
                )
            elif pinned != key:
                if not verify_rotation(manifest, pinned):
                    raise self._key_mismatch(manifest, pinned)
                conn.execute(
                    update(owner_keys_table)
                    .where(owner_keys_table.c.owner == manifest.owner)
                    .values(public_key=key, registered=utc_now_iso())
                )
        self._bind_name(conn, manifest, key)
        latest = conn.execute(
            select(func.max(adapters_table.c.version)).where(adapters_table.c.name == manifest.name)
        ).scalar_one_or_none()
        stored = manifest.with_version((latest or 0) + 1)
        conn.execute(
            insert(adapters_table).values(
                name=stored.name,
                version=stored.version,
                manifest=stored.to_json(),
                created=utc_now_iso(),
            )
        )
        return stored

    # -- trust ---------------------------------------------------------------------

    @staticmethod
    def _name_binding(conn: Connection, name: str) -> list[tuple[str, str]]:
        """``(public_key, owner)`` the name was bound to, oldest first."""
        rows = conn.execute(
            select(name_keys_table.c.public_key, name_keys_table.c.owner)
            .where(name_keys_table.c.name == name)
            .order_by(name_keys_table.c.seq)
        )
        return [(row[0], row[1]) for row in rows]

    def _check_name(self, manifest: Manifest, bound: list[tuple[str, str]]) -> bool:
        """Raise unless ``manifest`` may be the next version of its name; ``True``
        when it rotates the name to a new key."""
        if not bound:
            return False
        current, owner = bound[-1]
        if manifest.owner != owner:
            raise UntrustedKeyError(
                f"adapter name {manifest.name!r} is bound to owner {owner!r} (key "
                f"{fingerprint(current)}); owner {manifest.owner!r} with key "
                f"{fingerprint(manifest.owner_public_key)} cannot publish it"
            )
        key = normalize_public_key(manifest.owner_public_key)
        if key == current:
            return False
        if verify_rotation(manifest, current):
            return True
        raise UntrustedKeyError(
            f"adapter name {manifest.name!r} of owner {owner!r} is bound to key "
            f"{fingerprint(current)}; {manifest.ref} is signed with {fingerprint(key)} and "
            f"carries no rotation signed by the bound key"
        )

    def _bind_name(self, conn: Connection, manifest: Manifest, key: str) -> None:
        bound = self._name_binding(conn, manifest.name)
        if bound and not self._check_name(manifest, bound):
            return
        conn.execute(
            insert(name_keys_table).values(
                name=manifest.name,
                public_key=key,
                owner=manifest.owner,
                seq=len(bound),
                registered=utc_now_iso(),
            )
        )
        if bound:
            logger.info("adapter name %s rotated to key %s", manifest.name, fingerprint(key))

    def name_keys(self, name: str) -> builtins.list[str]:
        """Keys ``name`` was bound to, oldest first (the last one is current)."""
        with self._engine.connect() as conn:
            return [key for key, _ in self._name_binding(conn, name)]

    def owner_key(self, owner: str) -> str | None:
        """The public key pinned for ``owner`` on first publish, if any."""
        with self._engine.connect() as conn:
            return conn.execute(
                select(owner_keys_table.c.public_key).where(owner_keys_table.c.owner == owner)
            ).scalar_one_or_none()

    @staticmethod
    def _key_mismatch(manifest: Manifest, pinned: str) -> UntrustedKeyError:
        return UntrustedKeyError(
            f"owner {manifest.owner!r} is pinned to key {pinned}, but {manifest.ref} is "
            f"signed with {normalize_public_key(manifest.owner_public_key)}"
        )

    def _check_trust(self, manifest: Manifest) -> None:
        """Before a publish: the key may publish for the owner and for the name."""
        with self._engine.connect() as conn:
            self._check_name(manifest, self._name_binding(conn, manifest.name))
        if self.trusted_keys is not None:
            check_trusted_key(manifest, self.trusted_keys)
            return
        pinned = self.owner_key(manifest.owner)
        key = normalize_public_key(manifest.owner_public_key)
        if pinned is not None and pinned != key and not verify_rotation(manifest, pinned):
            raise self._key_mismatch(manifest, pinned)

    def _check_stored(self, manifest: Manifest) -> None:
        """On a read: a stored version must be signed by a key its name was bound to."""
        with self._engine.connect() as conn:
            bound = self._name_binding(conn, manifest.name)
        key = normalize_public_key(manifest.owner_public_key)
        if bound and (key, manifest.owner) not in bound:
            raise UntrustedKeyError(
                f"{manifest.ref} is signed by owner {manifest.owner!r} with key "
                f"{fingerprint(key)}, but the name is bound to "
                f"{[(o, fingerprint(k)) for k, o in bound]}"
            )
        if self.trusted_keys is not None:
            check_trusted_key(manifest, self.trusted_keys)
        if self.trust is not None:
            self.trust.check(manifest)

    # -- reading ---------------------------------------------------------------------

    def names(self) -> builtins.list[str]:
        """Names of all published adapters, sorted."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(adapters_table.c.name).distinct().order_by(adapters_table.c.name)
            )
            return [row[0] for row in rows]

    def list_versions(self, name: str) -> builtins.list[int]:
        """Published versions of ``name``, ascending.

        Raises
        ------
        NotFoundError
            If no version of ``name`` exists; lists the known names.
        """
        check_name("name", name)
        with self._engine.connect() as conn:
            versions = [
                row[0]
                for row in conn.execute(
                    select(adapters_table.c.version)
                    .where(adapters_table.c.name == name)
                    .order_by(adapters_table.c.version)
                )
            ]
        if not versions:
            raise NotFoundError(f"adapter {name!r} not found; available: {self._names_hint()}")
        return versions

    def _names_hint(self) -> str:
        names = self.names()
        return (", ".join(names[:20]) + (" ..." if len(names) > 20 else "")) or "none"

    def resolve(self, name: str, version: VersionSpec = "latest") -> Manifest:
        """Return the manifest of ``name`` at ``version`` (an int or ``"latest"``).

        Raises
        ------
        NotFoundError
            Naming the adapter and version, with the versions that exist.
        """
        spec = parse_version(version)
        versions = self.list_versions(name)
        number = versions[-1] if spec == "latest" else spec
        with self._engine.connect() as conn:
            text = conn.execute(
                select(adapters_table.c.manifest).where(
                    adapters_table.c.name == name, adapters_table.c.version == number
                )
            ).scalar_one_or_none()
        if text is None:
            raise NotFoundError(
                f"adapter {name!r} has no version {number}; available versions: {versions}"
            )
        return Manifest.from_json(text)

    def list(self) -> builtins.list[Manifest]:
        """The latest manifest of every adapter, sorted by name."""
        latest = (
            select(adapters_table.c.name, func.max(adapters_table.c.version).label("version"))
            .group_by(adapters_table.c.name)
            .subquery()
        )
        query = (
            select(adapters_table.c.manifest)
            .join(
                latest,
                (adapters_table.c.name == latest.c.name)
                & (adapters_table.c.version == latest.c.version),
            )
            .order_by(adapters_table.c.name)
        )
        with self._engine.connect() as conn:
            return [Manifest.from_json(row[0]) for row in conn.execute(query)]

    def _read_blob(self, manifest: Manifest, filename: str) -> bytes:
        digest = manifest.files[filename]
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(
                f"adapter {manifest.ref}: blob of file {filename!r} is missing at {path}"
            ) from None
        actual = sha256_hex(data)
        if actual != digest:
            raise IntegrityError(
                f"adapter {manifest.ref}: file {filename!r} is tampered: blob {path} has "
                f"sha256 {actual}, manifest says {digest}"
            )
        return data

    def _verified(self, manifest: Manifest, names: Sequence[str]) -> dict[str, bytes]:
        verify_manifest(manifest)
        self._check_stored(manifest)
        return {filename: self._read_blob(manifest, filename) for filename in names}

    def read_file(self, name: str, version: VersionSpec, filename: str) -> bytes:
        """Return one file of an adapter after checking signature and sha256.

        Raises
        ------
        NotFoundError
            If the adapter, version or file does not exist.
        IntegrityError, SignatureError
            If the blob or the manifest fails verification.
        """
        manifest = self.resolve(name, version)
        if filename not in manifest.files:
            raise NotFoundError(
                f"adapter {manifest.ref} has no file {filename!r}; files: {sorted(manifest.files)}"
            )
        return self._verified(manifest, [filename])[filename]

    def fetch(self, name: str, version: VersionSpec, dest_dir: str | Path) -> Manifest:
        """Verify an adapter's signature and files, then write them into ``dest_dir``.

        Nothing is written unless every file verifies.

        Raises
        ------
        IntegrityError
            Naming the tampered file and its blob path.
        SignatureError
            If the stored manifest's signature fails or its key is not trusted.
        """
        manifest = self.resolve(name, version)
        files = self._verified(manifest, builtins.list(manifest.files))
        write_files_atomically(dest_dir, files)
        logger.info("fetched %s into %s", manifest.ref, dest_dir)
        return manifest

    def verify(self, name: str | None = None) -> builtins.list[str]:
        """Check every signature and blob (of ``name``, or of all adapters), and that
        each adapter's tensors fit its base model and its ``adapter_config.json``.

        Returns
        -------
        list[str]
            One line per problem found; empty when everything verifies.
        """
        query = select(adapters_table.c.name, adapters_table.c.version, adapters_table.c.manifest)
        if name is not None:
            self.list_versions(name)
            query = query.where(adapters_table.c.name == name)
        with self._engine.connect() as conn:
            rows = builtins.list(
                conn.execute(query.order_by(adapters_table.c.name, adapters_table.c.version))
            )
        problems: builtins.list[str] = []
        for row_name, row_version, text in rows:
            ref = f"{row_name}@v{row_version}"
            try:
                manifest = Manifest.from_json(text)
            except (TypeError, ValueError) as e:
                problems.append(f"{ref}: manifest does not parse: {e}")
                continue
            if (manifest.name, manifest.version) != (row_name, row_version):
                problems.append(f"{ref}: manifest claims to be {manifest.ref}")
            try:
                verify_manifest(manifest)
                self._check_stored(manifest)
            except SignatureError as e:
                problems.append(f"{ref}: {e}")
            blobs: dict[str, bytes] = {}
            for filename in manifest.files:
                try:
                    blobs[filename] = self._read_blob(manifest, filename)
                except IntegrityError as e:
                    problems.append(str(e))
            if ADAPTER_CONFIG in blobs and ADAPTER_WEIGHTS in blobs:
                try:
                    check_artifact_fits(manifest, blobs, where=ref)
                    self._check_rank(manifest, blobs)
                except ValueError as e:
                    problems.append(str(e))
        for problem in problems:
            logger.warning("hub verify: %s", problem)
        return problems

    # -- peers -------------------------------------------------------------------

    def register_peer(
        self,
        peer_id: str,
        endpoint: str,
        base_model: str,
        adapters: Sequence[str] = (),
        *,
        owner: str,
        key: Ed25519PrivateKey,
    ) -> PeerInfo:
        """Sign a registration with the owner's ``key`` and register it here."""
        return self.register_peer_signed(
            sign_peer_request(
                key,
                action="register",
                peer_id=peer_id,
                owner=owner,
                endpoint=endpoint,
                base_model=base_model,
                adapters=adapters,
                timestamp=self._clock(),
            )
        )

    def register_peer_signed(self, request: SignedPeerRequest) -> PeerInfo:
        """Register or update a peer from a signed request; see :class:`PeerRegistry`."""
        return self._peers.register(request)

    def heartbeat(self, peer_id: str, *, owner: str, key: Ed25519PrivateKey) -> PeerInfo:
        """Record a heartbeat signed with the owner's ``key``."""
        return self.heartbeat_signed(
            sign_peer_request(
                key, action="heartbeat", peer_id=peer_id, owner=owner, timestamp=self._clock()
            )
        )

    def heartbeat_signed(self, request: SignedPeerRequest) -> PeerInfo:
        """Record a signed heartbeat; ``NotFoundError`` if the peer is unregistered."""
        return self._peers.heartbeat(request)

    def peers(self, alive_within: float | None = None) -> builtins.list[PeerInfo]:
        """All peers, each marked up if heard from within ``alive_within`` seconds.

        ``alive_within`` defaults to the store's ``peer_timeout``.
        """
        return self._peers.list(alive_within)
