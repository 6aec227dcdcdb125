"""Every SQL statement of the product lives in this package, one module per
aggregate. Functions take an open connection; the caller owns the transaction,
so one unit of work can span several aggregates (a message and its event)."""
