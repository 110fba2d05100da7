"""Loaded by every Python process started with this folder on PYTHONPATH (workers included).

Installs the no-egress guard when CRAWL2MODEL_NO_EGRESS is set; the repository root must also be on
PYTHONPATH so pipeline_lib imports.
"""

from pipeline_lib.guard import install_from_env

install_from_env()
