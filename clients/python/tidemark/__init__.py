# Generated package of proto/tidemark/v1 (clients/python/generate.sh).
