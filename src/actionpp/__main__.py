from actionpp.cli import main

raise SystemExit(main())
