"""Certificate-library (电子证照库) connectors: `CertificateLibrary` is the plugin seam, each
concrete library a sibling module registered under the `lianban.certificate_libraries`
entry-point group (`http`: the HTTP/JSON client)."""

from adapters.certificates.base import CertificateLibrary, certificate_library

__all__ = ["CertificateLibrary", "certificate_library"]
