"""`make demo`: the toolkit's main job on its embedded defaults."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protos.__main__ import summary  # noqa: E402


def main() -> int:
    print(summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
