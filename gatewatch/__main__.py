from gatewatch.cli import main

raise SystemExit(main())
