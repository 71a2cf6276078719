"""Browser tests: the Voila apps in headless Chromium."""
