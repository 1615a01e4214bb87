"""IMAP4rev1 access to the mailstore: ``proto`` (sans-IO protocol core), the asyncio adapter and the command handlers."""
