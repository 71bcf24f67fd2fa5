# language: fr
@exigence=SC.INS.05 @exigence=SC.INS.03 @exigence=SC.INS.15 @exigence=SENTINELLE.02 @exigence=SENTINELLE.05 @exigence=SC.INS.17
Fonctionnalité: SC.INS.05, SC.INS.03, SC.INS.15, SC.INS.17 — Recherche par traits, relance silencieuse avec le lieu de naissance, qualification en un clic, traces
  Sur une réponse 02 (plusieurs identités), le LGC relance automatiquement et silencieusement la recherche
  avec le code INSEE du lieu de naissance ; sur 00 il montre les concordances et permet la qualification en un clic.
  Chaque opération sur l'identité est tracée dans le dossier, datée et signée, et se rapproche du journal du
  téléservice INSi (SC.INS.17).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Homonymes départagés par le lieu de naissance
    Quand le médecin ouvre le dossier de "DE VINCI"
    Alors le journal INSi montre une recherche sans lieu de naissance puis la même avec le COG "63220"
    Et l'identité renvoyée par INSi est affichée avec le matricule "114026322090185"
    Et l'identité du patient est récupérée
    Quand le médecin qualifie l'identité en un clic avec la carte nationale d'identité
    Alors l'identité du patient est qualifiée
    Et les traces du dossier reprennent chaque recherche INSi du journal du téléservice, l'INS récupérée et la qualification, avec l'utilisateur
