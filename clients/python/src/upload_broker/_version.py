__version__ = "0.1.0"
USER_AGENT = f"upload-broker-client-python/{__version__}"
