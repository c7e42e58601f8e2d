"""Sans-I/O IMAP wire layer: command reader, sequence sets, FETCH parsing, response encoder."""
