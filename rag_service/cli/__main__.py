from rag_service.cli.main import main

raise SystemExit(main())
