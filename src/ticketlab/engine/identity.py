"""A run's identity: the settings and the model that made a run directory, recorded in its config.json and checked
before a run resumes there (docs/run-directory.md).

The directory's name carries the config hash (`Config.run_name`); config.json adds the model's fingerprint
(ticketlab.core.fingerprint) and `identity`, a hash of both. A directory made with another setting or another model
is refused with one line naming the first difference, before anything in it is written."""

import hashlib
import json
from pathlib import Path

from ticketlab.core.fingerprint import Fingerprint
from ticketlab.engine.config import NOT_HASHED, Config


def identity(cfg: Config, model: Fingerprint) -> str:
    """10 hex digits over the config hash and the model's fingerprint: equal only for the same settings and model."""
    return hashlib.sha256(f"{cfg.hash()}+{model.digest}".encode()).hexdigest()[:10]


def record(cfg: Config, preset: str | None, model: Fingerprint | None) -> dict:
    """What config.json holds: the hash, the full config, the non-default settings, the preset, and the model."""
    out = {"hash": cfg.hash(), "config": cfg.to_dict(), "non_default": cfg.non_default(), "preset": preset}
    if model is not None:
        out.update(fingerprint=model.digest, model=model.to_dict(), identity=identity(cfg, model))
    return out


def refusal(root: Path, existing: dict, cfg: Config, model: Fingerprint | None) -> str | None:
    """Why a run of `cfg` on `model` may not resume in `root`, whose config.json holds `existing`; None if it may.
    A directory written before fingerprints were recorded has none, and is accepted on its config alone."""
    setting = setting_difference(cfg, existing.get("config"))
    if setting:
        return f"run directory {root} holds a different config: {setting}; choose another --runs-dir"
    if existing.get("hash") != cfg.hash():
        return (f"run directory {root} holds a different config (hash {existing.get('hash')}, this one {cfg.hash()}); "
                f"choose another --runs-dir")
    recorded = existing.get("fingerprint")
    if model is None or recorded is None or recorded == model.digest:
        return None
    why = model_difference(model, existing.get("model")) or f"fingerprint {model.digest} here, {recorded} there"
    return f"run directory {root} was made with another model: {why}; choose another --runs-dir or delete {root}"


def setting_difference(cfg: Config, recorded) -> str | None:
    """The first hashed setting whose value differs from the recorded config's, as 'section.key A here, B there'.
    A key the record lacks (written before the key existed) counts as its default."""
    if not isinstance(recorded, dict):
        return None
    default = Config().to_dict()
    for section, values in cfg.to_dict().items():
        theirs = recorded.get(section) if isinstance(recorded.get(section), dict) else {}
        for key, value in values.items():
            old = theirs.get(key, default[section][key])
            if (section, key) not in NOT_HASHED and old != value:
                return f"{section}.{key} {show(value)} here, {show(old)} there"
    return None


def model_difference(model: Fingerprint, recorded) -> str | None:
    try:
        return model.difference(Fingerprint.from_dict(recorded))
    except (KeyError, TypeError, AttributeError):  # a record of another format: the digests alone differ
        return None


def show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)
