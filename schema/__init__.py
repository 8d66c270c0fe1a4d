"""GraphQL API and HTTP server of SalesInbox."""
