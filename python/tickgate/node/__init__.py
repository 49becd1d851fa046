"""The roles of a node and what runs them: ``Ingest`` (provider adapter, subscription pool,
core processor), ``Edge`` (client connections and the core's dispatcher), and, for
``tickgate serve --workers N``, the ``Node`` supervisor of one ingest and N edge processes."""
