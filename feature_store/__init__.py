"""The online feature store: Feast over Redis, fed from the catalog's feature topics.

`repo` builds Feast's objects from the repo description the platform derives from the catalog
(`headwater.feature_views`), `materializer` writes the feature topics into the online store, `serving` is how
agents read features with their provenance and freshness. Like `flink_apps`, this package ships as its own
image and imports nothing else of the project: it is configured by the description and its options.
"""
