"""The performer's console: a web page served by the driver that shows what MusicHal hears, remembers and plays,
and steers it through the one control table (``musichal --console``; see README, "The console")."""
