# Stand-in for python:3.11-slim built from Debian's packages (bookworm ships
# Python 3.11), for machines where no container registry answers.
#   docker build -f docker/python.Dockerfile --build-arg DEBIAN_IMAGE=... .
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
