"""On-premises RAG: the query side, the API and the shared core."""

import os as _os

# Private by construction: no library may reach for a model hub at run time.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("DO_NOT_TRACK", "1")
_os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
