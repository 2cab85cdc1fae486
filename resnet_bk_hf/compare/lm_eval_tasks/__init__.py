"""lm-eval-harness task definitions over the bench corpora (YAML beside this file; helpers in utils.py)."""
from pathlib import Path

TASK_DIR = Path(__file__).parent
