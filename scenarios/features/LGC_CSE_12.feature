# language: fr
@exigence=LGC.CSE.12
Fonctionnalité: LGC.CSE.12 — Envoi automatique du certificat de santé de l'enfant à la plateforme CSE
  Dès la validation du certificat de santé du 9e mois (CS9) ou du 24e mois (CS24), le LGC génère et envoie de
  lui-même, par MSSanté, un message avec le certificat à certificatsdesante@plateformecse.mssante.fr, qui l'adresse
  à la PMI départementale de l'enfant. Rien ne part avant la validation ; le message part une seule fois.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Certificat du 9e mois validé, envoyé une fois à la plateforme CSE
    Quand le médecin ouvre le dossier de "PETIT"
    Et le médecin rédige le certificat de santé CS9 de l'enfant, sans le valider
    Alors aucun message n'est parti à la plateforme des certificats de santé
    Quand le médecin valide le certificat
    Alors le LGC a envoyé de lui-même un seul message à la plateforme des certificats de santé, le certificat en CDA dans IHE_XDM, sans anomalie
