"""The ``local`` driver and the machinery only it uses: processes, servers, the
backend fork server and its preload."""
