from mailwarden.cli.main import main

main()
