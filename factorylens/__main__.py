from factorylens.cli import main

raise SystemExit(main())
