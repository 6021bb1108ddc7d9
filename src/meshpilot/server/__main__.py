from meshpilot.server.main import main

raise SystemExit(main())
