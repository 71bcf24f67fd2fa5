"""INSi téléservice simulator (SOAP 1.2, SEL-MP-043): recherche d'INS par traits et par carte Vitale."""
