"""The stages of the policy pipeline, one module per behaviour, in order:
``screen`` (trusted peers, the ban book, intel: the source alone), then on
the peeked message ``sanity``, ``rules``, ``limits`` and ``options``. Each
module's doc says what its stage decides and with which reasons; ``stage``
has their interface and ``build`` puts them in order from the config. A new
behaviour (deception is the next) is one more module here and one more line
in ``build._assemble``. ``tollfraud`` (the toll-fraud detectors and the
quiet-time international rule on INVITEs) is not yet in ``build``: import
it from its module (it loads phonenumbers).
"""

from __future__ import annotations

from .limits import LimitStage
from .options import OPTIONS_UNTRUSTED, OptionsFromTrusted
from .rules import MONITOR_LOGGED, RuleStage
from .sanity import Sanity
from .screen import BANNED, TRUSTED, BannedSources, IntelStage, TrustedPeers

__all__ = [
    "BANNED",
    "MONITOR_LOGGED",
    "OPTIONS_UNTRUSTED",
    "TRUSTED",
    "BannedSources",
    "IntelStage",
    "LimitStage",
    "OptionsFromTrusted",
    "RuleStage",
    "Sanity",
    "TrustedPeers",
]
