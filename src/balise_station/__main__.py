from balise_station.cli import main

raise SystemExit(main())
