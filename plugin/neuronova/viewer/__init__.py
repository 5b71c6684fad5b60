"""The viewer front: OHIF Viewer served same-origin, and NeuroNova's additions to Orthanc Explorer.

- :mod:`.settings`     the ``NeuroNova.Viewer`` section (OHIF folder, frames ``Accept``, OIDC)
- :mod:`.ohif_config`  OHIF's ``app-config.js``, generated from the settings
- :mod:`.static`       OHIF's ``dist/`` served from memory under ``/ohif`` (prefix rewrites)
- :mod:`.explorer`     JavaScript for ``orthanc.ExtendOrthancExplorer``
- :mod:`.service`      ``ViewerService``: what ``app.py`` wires and the ``/ohif`` route calls
"""
