# language: fr
@exigence=LGC.DMP/UX.10.01 @exigence=LGC.DMP/UX.10 @exigence=SC.INS.04 @exigence=SC.INS.22 @exigence=SC.APCV.01 @exigence=SENTINELLE.02 @exigence=SC.DMP/ALI/PROG.02 @exigence=SC.DMP/ALI/PROG.05
Fonctionnalité: LGC.DMP/UX.10.01 — Consultation type sous 3 secondes de latence réseau
  Le LGC ne bloque jamais l'interface pendant une requête : chaque appel aux services INSi et Ordonnance
  numérique montre son état (en cours, échec, réussi) et l'utilisateur continue d'utiliser le logiciel.
  Source : FAQ ANS, scénario LGC.DMP/UX.10.01 (seed 000_7792418d01b7d46f.txt).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Plan du Scénario: Consultation de <patient>
    Étant donné le patient "<patient>" d'INS "<ins>" a un DMP contenant au moins un document
    Et le dossier local de "<patient>" contient un document absent de son DMP
    Et le réseau est bridé avec une latence de 3 secondes sur tous les services
    Quand le médecin ouvre le dossier de "<patient>"
    Et le médecin lit l'Appli carte Vitale du patient
    Alors l'identité du patient est qualifiée d'après l'Appli carte Vitale
    Et l'appel INSi passe de « en cours » à « réussi » sans bloquer l'interface
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'appel Ordonnance numérique passe de « en cours » à « réussi » sans bloquer l'interface
    Et le numéro unique et le QR code figurent sur l'ordonnance
    Et l'ordonnance est envoyée au DMP
    Et l'ordonnance est envoyée au patient par MSSanté
    Et les journaux des services montrent INSi, puis ON, puis DMP et MSSanté pour ce patient
    Et l'interface a répondu aux autres actions pendant chaque appel

    Exemples:
      | patient  | ins             |
      | CLERICO  | 143110095083713 |
      | BOUCHER  | 167100093480710 |
