"""The web console: server-rendered pages for collection managers over the services' REST APIs."""
