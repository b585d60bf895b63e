from __future__ import annotations

from hugind.cli import main

raise SystemExit(main())
