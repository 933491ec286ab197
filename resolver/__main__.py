from resolver.cli.commands import main

main()
