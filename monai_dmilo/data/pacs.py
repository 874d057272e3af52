"""A PACS in the loop (pynetdicom, an extra: ``pip install pynetdicom``): send series with C-STORE,
fetch input series with C-FIND + C-GET.

* A destination or source is ``HOST:PORT:AET`` (the PACS's application entity title); this side
  calls itself ``MONAI_DMILO`` unless told otherwise.
* :func:`send_files` stores DICOM files on the PACS, one association for all of them; a refused
  association, an unreachable host or an instance the PACS rejects raises :class:`PacsError` with
  one line, and nothing on disk is touched (the caller retries later).
* :func:`retrieve` finds the series of a study (or one series, or every series of a patient) with a
  Study Root C-FIND and fetches them with C-GET into ``folder/<series>/<SOPInstanceUID>.dcm``, each
  series a folder (what :func:`~monai_dmilo.data.build_datalist` reads as one volume) named by
  :func:`series_folder_name`: series number, description and a digest of the series UID.
* :func:`parse_pacs_url`: ``dicom://HOST:PORT/AET?StudyInstanceUID=...`` (or ``SeriesInstanceUID=``,
  ``PatientID=``), what ``evaluate.yaml`` / ``inference.yaml`` take as ``dataset_dir`` to read
  their input from a PACS.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import parse_qs, urlparse

__all__ = ["PacsError", "Peer", "parse_peer", "parse_pacs_url", "send_files", "retrieve", "series_folder_name",
           "CALLING_AET"]

logger = logging.getLogger(__name__)

CALLING_AET = "MONAI_DMILO"
QUERY_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "PatientID")
MAX_CONTEXTS = 128  # presentation contexts one association may request (DICOM PS3.8); C-GET needs one of them


class PacsError(ValueError):
    """A PACS refused or could not be reached (one line: what, where, why)."""


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity: ``host``, ``port``, ``aet``."""

    host: str
    port: int
    aet: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.aet}"


def parse_peer(text: str, name: str = "dicom_destination") -> Peer:
    """``HOST:PORT:AET`` -> :class:`Peer`.

    Raises:
        ValueError: not three fields, a port that is not 1..65535, or an AE title over 16 characters.
    """
    parts = str(text).rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{name} must be HOST:PORT:AET (e.g. 127.0.0.1:4242:ORTHANC), got {text!r}.")
    host, port, aet = parts
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name}: port must be a number in 1..65535, got {port!r} in {text!r}.")
    if len(aet) > 16:
        raise ValueError(f"{name}: an AE title has at most 16 characters, got {aet!r}.")
    return Peer(host, int(port), aet)


def parse_pacs_url(url: str) -> tuple[Peer, dict[str, str]]:
    """``dicom://HOST:PORT/AET?StudyInstanceUID=...`` -> ``(peer, query)``.

    Raises:
        ValueError: another scheme, a missing part, or no (or an unknown) query key.
    """
    parsed = urlparse(str(url))
    aet = parsed.path.strip("/")
    if parsed.scheme != "dicom" or not parsed.hostname or not parsed.port or not aet:
        raise ValueError(f"a PACS source must be dicom://HOST:PORT/AET?StudyInstanceUID=... , got {url!r}.")
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown or not query:
        raise ValueError(f"a PACS source needs one of {list(QUERY_KEYS)} in its query, got {parsed.query!r} in {url!r}.")
    return parse_peer(f"{parsed.hostname}:{parsed.port}:{aet}", "dataset_dir"), query


def _application(calling_aet: str):
    try:
        from pynetdicom import AE
    except ImportError:
        raise ImportError("talking to a PACS needs pynetdicom: pip install pynetdicom "
                          "(or pip install 'monai_dmilo[kspace]').") from None
    quiet = logging.getLogger("pynetdicom")
    if quiet.level == logging.NOTSET:  # its connection errors become our one line (PacsError)
        quiet.setLevel(logging.CRITICAL)
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def _associate(ae, peer: Peer, **kwargs):
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.aet, **kwargs)
    if not assoc.is_established:
        why = "refused the association" if assoc.is_rejected else "could not be reached (no association)"
        raise PacsError(f"PACS {peer} {why}; nothing was changed on disk.")
    return assoc


def send_files(paths: Sequence[str | Path], destination: Peer | str, *, calling_aet: str = CALLING_AET) -> int:
    """C-STORE the DICOM files ``paths`` on ``destination``; returns how many were stored.

    Raises:
        PacsError: the association failed or the PACS rejected an instance (one line).
    """
    import pydicom

    peer = destination if isinstance(destination, Peer) else parse_peer(destination)
    datasets = [pydicom.dcmread(p) for p in paths]
    if not datasets:
        return 0
    ae = _application(calling_aet)
    for sop_class, syntax in {(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets}:
        ae.add_requested_context(sop_class, syntax)
    assoc = _associate(ae, peer)
    try:
        for path, ds in zip(paths, datasets):
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None or code not in (0x0000, 0xB000, 0xB006, 0xB007):
                raise PacsError(f"PACS {peer} did not store {Path(path).name} (status "
                                f"{'none: connection lost' if code is None else hex(code)}).")
    finally:
        assoc.release()
    return len(datasets)


def series_folder_name(ds) -> str:
    """``S<number>_<description>_<8 hex digits of the series UID's SHA-1>``: readable, file-name safe,
    unique per series (UIDs themselves are long and full of dots, which file stems cut)."""
    import hashlib

    description = "".join(c if c.isalnum() else "-" for c in str(ds.get("SeriesDescription", "")))[:32].strip("-")
    number = ds.get("SeriesNumber")
    digest = hashlib.sha1(str(ds.SeriesInstanceUID).encode()).hexdigest()[:8]
    return "_".join(p for p in (f"S{int(number):03d}" if number not in (None, "") else "S", description, digest) if p)


def _find_series(ae, peer: Peer, query: dict[str, str]) -> list[str]:
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.SeriesInstanceUID = query.get("SeriesInstanceUID", "")
    identifier.StudyInstanceUID = query.get("StudyInstanceUID", "")
    if "PatientID" in query:
        identifier.PatientID = query["PatientID"]
    assoc = _associate(ae, peer)
    series = []
    try:
        for status, found in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            if status is None:
                raise PacsError(f"PACS {peer}: the C-FIND got no answer (connection lost).")
            if status.Status in (0xFF00, 0xFF01) and found is not None:
                series.append((str(found.StudyInstanceUID), str(found.SeriesInstanceUID)))
    finally:
        assoc.release()
    return series


def retrieve(source: Peer | str, query: dict[str, str], folder: str | Path, *, calling_aet: str = CALLING_AET,
             storage_classes: Iterable[str] | None = None) -> list[Path]:
    """Fetch the series matching ``query`` (keys of :data:`QUERY_KEYS`) from ``source`` into ``folder``.

    Returns:
        one folder per series (sorted by Series Instance UID).

    Raises:
        PacsError: no association, a failed C-GET, or nothing matching the query.
    """
    from pydicom.dataset import Dataset
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet
    from pynetdicom.presentation import StoragePresentationContexts

    peer = source if isinstance(source, Peer) else parse_peer(source, "dataset_dir")
    folder = Path(folder)
    found = _find_series(_application(calling_aet), peer, query)
    if not found:
        raise PacsError(f"PACS {peer} holds no series matching {query}.")
    ae = _application(calling_aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    classes = list(storage_classes or [c.abstract_syntax for c in StoragePresentationContexts])[:MAX_CONTEXTS - 1]
    for sop_class in classes:
        ae.add_requested_context(sop_class)
    roles = [build_role(c, scp_role=True) for c in classes]

    def store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        target = folder / series_folder_name(ds) / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        stored.add(target.parent)
        return 0x0000

    out = []
    for study_uid, series_uid in sorted(set(found), key=lambda s: s[1]):
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        stored: set[Path] = set()
        assoc = _associate(ae, peer, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, store)])
        try:
            last = None
            for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
                last = status
            if last is None or last.Status not in (0x0000, 0xB000):
                raise PacsError(f"PACS {peer}: C-GET of series {series_uid} failed (status "
                                f"{'none' if last is None else hex(last.Status)}).")
        finally:
            assoc.release()
        for path in sorted(stored):
            out.append(path)
            logger.info("retrieved series %s from %s into %s: %d instances", series_uid, peer, path,
                        len(list(path.glob("*.dcm"))))
    return out
