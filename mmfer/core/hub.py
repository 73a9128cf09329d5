"""How mmfer finds and loads a Hugging Face (transformers) checkpoint.

A model is named by a hub id with an optional revision (``org/name``, ``org/name@v1.0``, or with
an explicit ``hf:`` prefix) or by a local directory written by ``save_pretrained``. The rules:

* **Offline first when asked.** ``local_files_only`` (``--offline`` / ``--hf-offline``, or
  ``MMFER_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``: :func:`mmfer.core.offline.offline_mode`) uses the local
  Hugging Face cache only, with no network connection. Without it the hub is asked, and when the hub cannot be
  reached the cache is tried before giving up.
* **Safetensors only.** Weights are loaded with ``use_safetensors=True``: a checkpoint that only
  has pickled ``pytorch_model.bin`` weights is refused, because unpickling runs code.
* **No remote code** unless the user passes ``trust_remote_code`` (``--trust-remote-code``): a
  checkpoint whose config needs its own Python files is refused with a message that says so.
* **One-line errors** (:class:`HFModelError`) naming the model and everything that was tried.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from mmfer.core.errors import ModelLoadError
from mmfer.core.offline import hub_endpoint, offline_mode
from mmfer.paths import WEIGHTS_DIR

HF_PREFIX = "hf:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class HFModelError(ModelLoadError):
    """A transformers checkpoint that cannot be used here; the message names it and what was tried."""


@dataclasses.dataclass(frozen=True)
class HFSpec:
    """Where a transformers checkpoint comes from, and the loading rules for it."""

    source: str  # hub id or local directory
    revision: str | None = None
    local_files_only: bool = False
    trust_remote_code: bool = False

    @property
    def is_local(self) -> bool:
        return Path(self.source).expanduser().is_dir()

    @property
    def label(self) -> str:
        """How reports name it: ``org/name@rev`` or the directory."""
        return self.source + (f"@{self.revision}" if self.revision else "")


def is_hf_spec(name: str | Path | None) -> bool:
    """True when ``name`` means a transformers checkpoint rather than an mmfer model.

    mmfer models are the shipped names and folders with ``card.json``; transformers checkpoints are
    ``hf:``-prefixed names, folders with ``config.json``, and names shaped like hub ids that are
    neither a shipped model nor an existing path.
    """
    if name is None:
        return False
    text = str(name)
    if text.startswith(HF_PREFIX):
        return True
    path = Path(text).expanduser()
    if path.exists():
        folder = path.parent if path.is_file() else path
        return not (folder / "card.json").is_file() and (folder / "config.json").is_file()
    if (WEIGHTS_DIR / text).is_dir():
        return False
    return bool(_HUB_ID.match(text.split("@", 1)[0])) and "/" in text


def parse_spec(name: str | Path, revision: str | None = None, local_files_only: bool = False,
               trust_remote_code: bool = False) -> HFSpec:
    """``[hf:]org/name[@revision]`` or a directory -> :class:`HFSpec` (no network access)."""
    text = str(name)
    if text.startswith(HF_PREFIX):
        text = text[len(HF_PREFIX):]
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise HFModelError(f"{name}: a transformers checkpoint is a directory (config.json + *.safetensors), "
                               "not a file")
        return HFSpec(str(path), None, True, trust_remote_code)
    if "@" in text and revision is None:
        text, revision = text.split("@", 1)
    if text.startswith((".", "/", "~")) or not _HUB_ID.match(text):
        raise HFModelError(f"{name}: neither an existing directory nor a Hugging Face hub id (org/name[@revision])")
    return HFSpec(text, revision or None, local_files_only or offline_mode(), trust_remote_code)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


def _is_network_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    kinds: list[type] = [OfflineModeIsEnabled, ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):  # huggingface_hub 2.x talks through httpx2, 1.x httpx, older requests
        try:
            kinds.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            pass
    try:
        import requests

        kinds += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, tuple(kinds)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_PROBE: dict[str, str | None] = {}


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub endpoint cannot be reached (one TCP connect, remembered per process), or None.
    Behind a proxy the direct connect says nothing, so it is skipped there."""
    import socket
    from urllib.parse import urlparse

    endpoint = hub_endpoint()
    if endpoint not in _PROBE:
        proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                                  "ALL_PROXY", "all_proxy"))
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        result = None
        if not proxied and url.hostname:
            try:
                socket.create_connection((url.hostname, port), timeout=timeout).close()
            except OSError as exc:
                result = f"{url.hostname}:{port}: {exc.strerror or type(exc).__name__}"
        _PROBE[endpoint] = result
    return _PROBE[endpoint]


def _unreachable(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"unreachable ({_one_line(cause or exc)})"


def _fetch(spec: HFSpec, filename: str, local_files_only: bool) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(spec.source, filename, revision=spec.revision, local_files_only=local_files_only,
                           endpoint=hub_endpoint())


def resolve(spec: HFSpec) -> tuple[dict[str, Any], HFSpec]:
    """Read the checkpoint's config.json (local dir, hub, then the HF cache when the hub is unreachable).

    Returns the config as a dict and the spec to load the rest with (``local_files_only`` set when
    only the cache could be used). Refuses checkpoints that need remote code or have no safetensors.
    """
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise HFModelError(f"{spec.label}: transformers checkpoints need the transformers package: "
                           "pip install 'mmfer[hf]' (or transformers>=5.17)")
    tried: list[str] = []
    if spec.is_local:
        cfg_file = Path(spec.source).expanduser() / "config.json"
        if not cfg_file.is_file():
            raise HFModelError(f"{spec.source}: not a transformers checkpoint (no config.json in the directory)")
        config_path = str(cfg_file)
    else:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        attempts = [True] if spec.local_files_only else [False, True]
        problem = None if spec.local_files_only else _hub_unreachable()
        if problem:  # straight to the cache: huggingface_hub would retry every file for ~20 s first
            tried.append(f"the Hugging Face hub: unreachable ({problem})")
            attempts = [True]
        config_path = ""
        for offline in attempts:
            where = "the local Hugging Face cache" if offline else "the Hugging Face hub"
            try:
                config_path = _fetch(spec, "config.json", offline)
                spec = dataclasses.replace(spec, local_files_only=offline)
                break
            except RevisionNotFoundError:
                raise HFModelError(f"{spec.label}: the hub has no revision {spec.revision!r}") from None
            except GatedRepoError:
                raise HFModelError(f"{spec.label}: a gated model; accept its terms on the hub and log in "
                                   "(`hf auth login`)") from None
            except RepositoryNotFoundError:
                raise HFModelError(f"{spec.label}: no such model on the Hugging Face hub (misspelt id, or a private "
                                   "repository you are not logged in for)") from None
            except LocalEntryNotFoundError as exc:  # (a subclass of EntryNotFoundError: caught first)
                tried.append(f"{where}: " + ("not cached" if offline else _unreachable(exc)))
            except EntryNotFoundError:
                raise HFModelError(f"{spec.label}: the repository has no config.json (not a transformers "
                                   "checkpoint)") from None
            except Exception as exc:  # noqa: BLE001 - network stacks raise many types; the message carries it
                if not _is_network_error(exc):
                    raise HFModelError(f"{spec.label}: {_one_line(exc)}") from None
                tried.append(f"{where}: unreachable ({_one_line(exc)})")
        if not config_path:
            hint = (" (offline: drop --offline / --hf-offline and unset MMFER_OFFLINE / HF_HUB_OFFLINE to download)"
                    if spec.local_files_only else "")
            raise HFModelError(f"{spec.label}: not found; tried " + "; ".join(tried) + hint)
    try:
        config = json.loads(Path(config_path).read_text())
    except (OSError, ValueError) as exc:
        raise HFModelError(f"{spec.label}: unreadable config.json ({_one_line(exc)})") from None
    if not isinstance(config, dict):
        raise HFModelError(f"{spec.label}: config.json is not a JSON object")
    if config.get("auto_map") and not spec.trust_remote_code:
        raise HFModelError(f"{spec.label}: this checkpoint needs its own Python code (auto_map in config.json); "
                           "mmfer does not run remote code unless you pass --trust-remote-code "
                           "(trust_remote_code=True) after reading that code")
    if spec.is_local:
        folder = Path(spec.source).expanduser()
        if not any(folder.glob("*.safetensors")):
            bins = sorted(p.name for p in folder.glob("*.bin"))
            raise HFModelError(f"{spec.source}: no *.safetensors weights" + (
                f" (only pickled {', '.join(bins)}: mmfer loads safetensors only; convert with "
                "`model.save_pretrained(dir, safe_serialization=True)`)" if bins else ""))
    return config, spec


def pretrained(cls: Any, spec: HFSpec, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` under the loading rules, errors as one line."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars say nothing to mmfer users
    kw: dict[str, Any] = {"revision": spec.revision, "local_files_only": spec.local_files_only,
                          "trust_remote_code": spec.trust_remote_code, **kwargs}
    if hasattr(cls, "_from_config") or cls.__name__.startswith("AutoModel"):
        kw.setdefault("use_safetensors", True)
    try:
        return cls.from_pretrained(str(Path(spec.source).expanduser()) if spec.is_local else spec.source, **kw)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError...; one line out
        what = getattr(cls, "__name__", str(cls))
        raise HFModelError(f"{spec.label}: {what} could not load it ({_one_line(exc)})") from None


def _kind_of(model_type: str) -> str:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    )

    if model_type == "clip":
        return "CLIP (image-text)"
    if model_type in MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES:
        return "speech"
    if model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return "image"
    return "text or other"


#: What each mmfer branch accepts, by the kind of :func:`_kind_of`.
_BRANCH_KINDS = {"audio": "speech", "speech-encoder": "speech", "face": "image", "scene": "CLIP (image-text)"}
_BRANCH_OPTION = {"audio": "--audio-model", "speech-encoder": "model.hf_model", "face": "--face-model",
                  "scene": "--clip-model hf:..."}


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def require_modality(config: dict[str, Any], branch: str, spec: HFSpec) -> None:
    """Refuse a checkpoint of the wrong modality for ``branch`` (audio, speech-encoder, face, scene)."""
    model_type = str(config.get("model_type", ""))
    kind = _kind_of(model_type) if model_type else "unknown"
    if kind != _BRANCH_KINDS[branch] or (branch == "speech-encoder" and model_type == "whisper"):
        fits = [b for b, k in _BRANCH_KINDS.items() if k == kind and b != "speech-encoder"]
        hint = f"; it fits {_BRANCH_OPTION[fits[0]]}" if fits else ""
        raise HFModelError(f"{spec.label}: {_a(kind)} model ({model_type or 'no model_type'}), not "
                           f"{_a(_BRANCH_KINDS[branch])} model for the {branch} branch{hint}")
    archs = config.get("architectures") or []
    if branch in ("audio", "face") and archs and not any(a.endswith(("ForAudioClassification",
                                                                      "ForSequenceClassification",
                                                                      "ForImageClassification")) for a in archs):
        raise HFModelError(f"{spec.label}: {archs[0]} has no classification head; a ready {branch} classifier is "
                           "an ...ForAudioClassification / ...ForImageClassification checkpoint"
                           + (" (train a head on this encoder with configs/audio_wavlm_superb.yaml)"
                              if branch == "audio" else ""))
