from unstatic.cli import main

main()
